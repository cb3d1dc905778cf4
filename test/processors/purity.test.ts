/**
 * Processors decide, the runtime acts: nothing under processors/ may import an I/O client. (The rule lives here
 * as a test so that it runs wherever the tests run.)
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const forbidden = [
  'kafkajs',
  'ioredis',
  '@clickhouse/client',
  '@anthropic-ai/sdk',
  'node:fs',
  'node:net',
  'node:http',
  'node:https',
  'node:child_process',
  'fs',
  'net',
  'http',
  'https',
];
const dir = join(import.meta.dirname, '../../processors');

describe('processors are pure', () => {
  const files = readdirSync(dir).filter((f) => f.endsWith('.ts'));

  it('has processors to check', () => {
    expect(files.length).toBeGreaterThan(0);
  });

  it.each(files)('%s imports no I/O client', (file) => {
    const source = readFileSync(join(dir, file), 'utf8');
    const imports = [...source.matchAll(/from\s+['"]([^'"]+)['"]/g)].map((m) => m[1]!);
    expect(imports.filter((i) => forbidden.includes(i) || forbidden.some((f) => i.startsWith(`${f}/`)))).toEqual([]);
  });
});
