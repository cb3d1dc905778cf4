/**
 * `run` and `sink` take what the topology declares: a processor whose enrichment service is not declared, and a
 * topology without a ClickHouse sink, each fail with one line saying what to declare (exit 1, a runtime error).
 */
import { describe, expect, it, vi } from 'vitest';
import { lines, runCli } from '../support/cli.ts';

vi.setConfig({ testTimeout: 120_000 });

const FILE = 'test/fixtures/topologies/undeclared.ts';

describe('what run and sink need the topology to declare', () => {
  it('run: an enrich.service the topology does not declare', async () => {
    const result = await runCli(['run', FILE, '--processor', 'enricher'], { env: { AS_METRICS_PORT: '0' } });
    expect(result.code, result.stderr).toBe(1);
    expect(lines(result.stderr)).toEqual([
      'agent-streams run: AS_TOPOLOGY_INVALID: topology undeclared does not declare the enrichment service "lookup" that its processors ask for ' +
        "(enrich.service); add services: { 'lookup': (deps) => … } to its defineTopology()",
    ]);
  });

  it('sink: a topology with no sink.clickhouse', async () => {
    const result = await runCli(['sink', FILE], { env: { AS_METRICS_PORT: '0' } });
    expect(result.code, result.stderr).toBe(1);
    expect(lines(result.stderr)).toEqual([
      `agent-streams sink: AS_TOPOLOGY_INVALID: topology undeclared (${FILE}) declares no ClickHouse sink; ` +
        'add sink: { clickhouse: { topics: [...], mappings: { [recordType]: mapTo(table, toRow) } } } to its defineTopology()',
    ]);
  });
});
