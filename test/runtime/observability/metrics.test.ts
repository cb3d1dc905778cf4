import { describe, expect, it } from 'vitest';
import { createMetrics, LlmTokenKind } from '../../../runtime/observability/metrics.ts';

describe('createMetrics', () => {
  it('gives each runtime its own registry, so two can coexist', async () => {
    const a = createMetrics({ processMetrics: false });
    const b = createMetrics({ processMetrics: false });
    a.recordsConsumed.inc({ processor: 'p', topic: 't', partition: '0' }, 3);
    expect((await a.recordsConsumed.get()).values[0]?.value).toBe(3);
    expect((await b.recordsConsumed.get()).values).toEqual([]);
  });

  it('names every metric with the agent_streams_ prefix and Prometheus suffixes', async () => {
    const metrics = createMetrics({ processMetrics: false });
    const names = metrics.registry.getMetricsAsArray().map((metric) => metric.name);
    for (const name of names) expect(name).toMatch(/^agent_streams_[a-z_]+$/);
    expect(names).toEqual(
      expect.arrayContaining([
        'agent_streams_records_consumed_total',
        'agent_streams_records_produced_total',
        'agent_streams_records_dead_lettered_total',
        'agent_streams_records_late_total',
        'agent_streams_batch_duration_seconds',
        'agent_streams_end_to_end_latency_seconds',
        'agent_streams_consumer_lag_records',
        'agent_streams_state_operation_duration_seconds',
        'agent_streams_state_operation_errors_total',
        'agent_streams_sink_operation_duration_seconds',
        'agent_streams_sink_operation_errors_total',
        'agent_streams_llm_tokens_total',
        'agent_streams_llm_cost_usd_total',
        'agent_streams_rebalances_total',
        'agent_streams_transactions_committed_total',
        'agent_streams_transactions_aborted_total',
      ]),
    );
  });

  it('includes process metrics by default and applies default labels', async () => {
    const metrics = createMetrics({ defaultLabels: { instance: 'r1' } });
    metrics.llmTokens.inc({ model: 'claude', agent: 'triage', kind: LlmTokenKind.CACHE_READ }, 120);
    metrics.batchDuration.observe({ processor: 'p' }, 0.004);
    const text = await metrics.registry.metrics();
    expect(text).toContain('process_cpu_user_seconds_total');
    expect(text).toContain(
      'agent_streams_llm_tokens_total{model="claude",agent="triage",kind="cache_read",instance="r1"} 120',
    );
    expect(text).toContain('agent_streams_batch_duration_seconds_bucket{le="0.005",instance="r1",processor="p"} 1');
  });
});
