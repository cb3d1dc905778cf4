/**
 * What `npm pack` puts in the tarball (no service needed): the build of the public entries and the CLI, the bin,
 * `init`'s templates, the ClickHouse migrations, LICENSE and README — and nothing else: no tests, no sources, no
 * caches, no keys. Runs `npm pack --dry-run`, which builds dist/ first (prepack), so a build that fails fails here.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '../..');

interface PackEntry {
  path: string;
  size: number;
}
interface PackResult {
  filename: string;
  size: number;
  unpackedSize: number;
  entryCount: number;
  files: PackEntry[];
}
interface Manifest {
  name: string;
  license: string;
  private?: boolean;
  main: string;
  types: string;
  bin: Record<string, string>;
  exports: Record<string, string | Record<string, string>>;
}

const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as Manifest;
let pack: PackResult;
let paths: Set<string>;

/** Every file an `exports` entry names, with its conditions flattened. */
function exportTargets(): string[] {
  return Object.values(manifest.exports)
    .flatMap((target) => (typeof target === 'string' ? [target] : Object.values(target)))
    .map((p) => p.replace(/^\.\//, ''));
}

describe('the npm package', () => {
  beforeAll(() => {
    // npm prints the prepack build's output on stdout before the JSON.
    const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--loglevel=error'], {
      cwd: root,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    pack = (JSON.parse(out.slice(out.indexOf('\n[') + 1)) as PackResult[])[0]!;
    paths = new Set(pack.files.map((f) => f.path));
    console.log(
      `npm pack: ${pack.filename}, ${pack.entryCount} files, ${(pack.size / 1024).toFixed(0)} KiB packed, ${(pack.unpackedSize / 1024).toFixed(0)} KiB unpacked`,
    );
  }, 120_000);

  it('is publishable, Apache-2.0 with the license text, and exports the runtime, the test driver and the CLI', () => {
    expect(manifest.private).toBeUndefined();
    expect(manifest.license).toBe('Apache-2.0');
    expect(readFileSync(join(root, 'LICENSE'), 'utf8')).toMatch(
      /Apache License\s+Version 2\.0, January 2004[\s\S]*END OF TERMS AND CONDITIONS/,
    );
    expect(Object.keys(manifest.exports).sort()).toEqual(['.', './package.json', './testing']);
    expect(manifest.bin).toEqual({ 'agent-streams': 'cli/bin.mjs' });
  });

  it('holds every file that exports, main, types and bin name, and they exist after the build', () => {
    const targets = [...exportTargets(), manifest.main, manifest.types, ...Object.values(manifest.bin)];
    for (const target of targets) {
      expect(paths, target).toContain(target);
      expect(existsSync(join(root, target)), target).toBe(true);
    }
    for (const required of [
      'LICENSE',
      'README.md',
      'package.json',
      'dist/cli/main.js',
      'dist/runtime/testing/index.d.ts',
    ])
      expect(paths).toContain(required);
    // init's project, file for file, and the sink's migrations.
    const templates = (dir: string): string[] =>
      readdirSync(join(root, dir), { withFileTypes: true }).flatMap((d) =>
        d.isDirectory() ? templates(join(dir, d.name)) : [join(dir, d.name)],
      );
    for (const file of templates('cli/templates/project')) expect(paths).toContain(file);
    for (const file of readdirSync(join(root, 'infra/clickhouse/migrations')))
      expect(paths).toContain(`infra/clickhouse/migrations/${file}`);
  });

  it('holds no tests, sources, caches, stack data, keys or secrets', () => {
    const stray = [...paths].filter(
      (p) =>
        /^(test|bench|tools|\.cache|\.stack|node_modules|coverage|docs)\//.test(p) ||
        (p.endsWith('.ts') && !p.endsWith('.d.ts') && !p.startsWith('cli/templates/')) ||
        p.endsWith('.map') ||
        /\.(pem|key|crt|p12|jks|env|tgz)$|(^|\/)\.env|secret|password|credential/i.test(p),
    );
    expect(stray).toEqual([]);
    // The build rewrote every relative `.ts` import to `.js`: Node 20 loads dist/ as it is.
    const tsImports = [...paths].filter(
      (p) =>
        p.endsWith('.js') && /(from|import\()\s*['"]\.{1,2}\/[^'"]*\.ts['"]/.test(readFileSync(join(root, p), 'utf8')),
    );
    expect(tsImports).toEqual([]);
  });
});
