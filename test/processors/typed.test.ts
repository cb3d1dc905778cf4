/**
 * The fleet is written on the public, typed API, as a user's project would be: processors and topologies import
 * the runtime from its front door only, read records typed by their input handles (no `record.value as X`), and
 * forward, keep state and read tables through handles (no record type or store name written twice).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '../..');

function sources(dir: string, recursive: boolean): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return recursive ? sources(path, true) : [];
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** The code without comments, so that prose ("as a z-score") is not taken for a cast. */
function code(path: string): string {
  return readFileSync(join(root, path), 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
}

const processors = sources('processors', true);
const topologies = sources('topologies', false);

describe('the fleet on the public typed API', () => {
  it('has files to check', () => {
    expect(processors.length).toBeGreaterThan(5);
    expect(topologies).toContain(join('topologies', 'market-signals.ts'));
  });

  it.each([...processors, ...topologies])('%s imports the runtime only from runtime/index.ts', (path) => {
    const imports = [...code(path).matchAll(/from\s+['"]([^'"]+)['"]/g)].map((m) => m[1]!);
    const entry = relative(join(root, path, '..'), join(root, 'runtime/index.ts')).replaceAll('\\', '/');
    const deep = imports.filter((i) => /(^|\/)runtime\//.test(i) && i !== entry);
    expect(deep).toEqual([]);
  });

  it.each(processors)('%s casts no record value and names no record type or store in a call', (path) => {
    const text = code(path);
    const problems = [
      ...[...text.matchAll(/\.value\s+as\s+[\w<{[]/g)].map((m) => `cast of a record value: "${m[0]}"`),
      ...[...text.matchAll(/\bas\s+unknown\s+as\b/g)].map((m) => `double cast: "${m[0]}"`),
      ...[...text.matchAll(/\bforward\(\s*\{/g)].map(
        () => 'forward({ topic, recordType, … }) instead of forward(handle, { key, value })',
      ),
      ...[...text.matchAll(/\bctx\.(store|table)(<[^>(]*>)?\(\s*['"`]/g)].map(
        (m) => `ctx.${m[1]}('name') instead of ctx.${m[1]}(handle)`,
      ),
      ...[...text.matchAll(/recordType:\s*['"`\w]/g)].map((m) => `a record type written out: "${m[0]}"`),
      ...[...text.matchAll(/record:\s*StreamRecord\s*[,)]/g)].map(() => 'an untyped StreamRecord parameter'),
    ];
    expect(problems).toEqual([]);
  });
});
