/**
 * The alert rules are valid (`promtool check rules`), and their unit tests (infra/prometheus/rules.test.yml) pass —
 * and fail when a rule is changed, so they test something.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureTools, hostTools } from '../../infra/local/tools.ts';

const dir = join(import.meta.dirname, '../../infra/prometheus');

function promtool(args: string[], cwd: string): { ok: boolean; output: string } {
  try {
    return { ok: true, output: execFileSync('promtool', args, { cwd, encoding: 'utf8', stdio: 'pipe' }) };
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    return { ok: false, output: `${stdout ?? ''}${stderr ?? ''}` };
  }
}

describe('alert rules infra/prometheus/rules.yml', () => {
  beforeAll(() => ensureTools([hostTools.prometheus], (line) => console.log(line)), 300_000);

  it('are valid, as is the Prometheus configuration that loads them', () => {
    const rules = promtool(['check', 'rules', 'rules.yml'], dir);
    expect(rules.output).toMatch(/SUCCESS: 8 rules found/);
    expect(rules.ok).toBe(true);
    expect(promtool(['check', 'config', 'prometheus.yml'], dir).ok).toBe(true);
  });

  it('pass their unit tests, which fail when a rule changes', () => {
    const passed = promtool(['test', 'rules', 'rules.test.yml'], dir);
    expect(passed.output).toMatch(/SUCCESS/);
    expect(passed.ok).toBe(true);

    const copy = mkdtempSync(join(tmpdir(), 'rules-'));
    try {
      copyFileSync(join(dir, 'rules.test.yml'), join(copy, 'rules.test.yml'));
      const original = readFileSync(join(dir, 'rules.yml'), 'utf8');
      for (const [from, to] of [
        ['> 0.01', '> 0.05'], // dead-letter threshold
        ['>= 0.8', '>= 0.9'], // budget threshold
        ['max by (application, processor, topic, partition)', 'sum by (application, processor, topic, partition)'], // lag counted twice
      ] as const) {
        expect(original).toContain(from);
        writeFileSync(join(copy, 'rules.yml'), original.replace(from, to));
        const mutated = promtool(['test', 'rules', 'rules.test.yml'], copy);
        expect(mutated.ok, `${from} → ${to}`).toBe(false);
        expect(mutated.output).toMatch(/FAILED/);
      }
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });
});
