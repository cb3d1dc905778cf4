import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createMetrics } from '../../../runtime/observability/metrics.ts';
import { auditRecord, LlmOutcome } from '../../../runtime/llm/index.ts';
import { recordMetrics } from '../../../runtime/llm/audit.ts';

const migrations = resolve(import.meta.dirname, '../../../infra/clickhouse/migrations');
const migration = readFileSync(resolve(migrations, '0005_llm_calls.sql'), 'utf8');
// The table's columns: those it was created with, then those later migrations added (ADD COLUMN name Type).
const added = readFileSync(resolve(migrations, '0007_llm_calls_trace.sql'), 'utf8');
const columns = [
  ...[...migration.matchAll(/^\s{4}(\w+)\s+\w+/gm)].map((m) => m[1]),
  ...[...added.matchAll(/ADD COLUMN (\w+) \w+/g)].map((m) => m[1]),
];

describe('audit records', () => {
  it('have exactly the llm_calls columns, in table order', () => {
    const record = auditRecord({
      agent: 'news',
      model: 'claude-haiku-5-5',
      usage: { input: 10, output: 5, cacheRead: 3, cacheWrite: 2 },
      costUsd: 0.00004,
      latencyMs: 12.6,
      promptHash: 'ab',
      outcome: LlmOutcome.OK,
      startedAtMs: 1_767_607_200_123,
    });
    expect(columns).toHaveLength(15);
    expect(Object.keys(record)).toEqual(columns);
    expect(record).toMatchObject({
      input_tokens: 10,
      output_tokens: 5,
      cache_read_tokens: 3,
      cache_write_tokens: 2,
      latency_ms: 13,
      created_at: 1_767_607_200,
      created_at_ms: 1_767_607_200_123,
    });
  });

  it('count into the metrics: tokens by kind, cost, duration for sent requests, errors for failed ones', async () => {
    const metrics = createMetrics({ processMetrics: false });
    const base = { agent: 'news', model: 'm', costUsd: 0, latencyMs: 100, promptHash: '', startedAtMs: 0 };
    recordMetrics(
      metrics,
      auditRecord({
        ...base,
        usage: { input: 7, output: 2, cacheRead: 0, cacheWrite: 0 },
        costUsd: 0.5,
        outcome: LlmOutcome.OK,
      }),
      true,
    );
    recordMetrics(
      metrics,
      auditRecord({
        ...base,
        usage: { input: 0, output: 0, cacheRead: 0, cacheWrite: 0 },
        outcome: LlmOutcome.OVERLOADED,
      }),
      true,
    );
    recordMetrics(
      metrics,
      auditRecord({
        ...base,
        usage: { input: 0, output: 0, cacheRead: 0, cacheWrite: 0 },
        outcome: LlmOutcome.BUDGET_EXHAUSTED,
      }),
      false,
    );
    expect((await metrics.llmTokens.get()).values.map((v) => [v.labels.kind, v.value])).toEqual([
      ['input', 7],
      ['output', 2],
    ]);
    expect((await metrics.llmCost.get()).values[0]?.value).toBe(0.5);
    expect((await metrics.llmRequestErrors.get()).values[0]?.value).toBe(1);
    expect((await metrics.llmRequestDuration.get()).values.find((v) => v.metricName?.endsWith('_count'))?.value).toBe(
      2,
    );
  });
});
