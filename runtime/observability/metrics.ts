/**
 * The metrics one runtime exposes on /metrics. Each runtime gets its own registry rather than prom-client's global
 * one, so several runtimes (and tests) can live in one process without "metric already registered" clashes.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

const PREFIX = 'agent_streams_';

const partitionLabels = ['processor', 'topic', 'partition'] as const;
const processorLabels = ['processor'] as const;
const operationLabels = ['operation'] as const;
const llmCallLabels = ['model', 'agent'] as const;
const llmTokenLabels = ['model', 'agent', 'kind'] as const;

export const LlmTokenKind = {
  INPUT: 'input',
  OUTPUT: 'output',
  CACHE_READ: 'cache_read',
  CACHE_WRITE: 'cache_write',
} as const;
export type LlmTokenKind = (typeof LlmTokenKind)[keyof typeof LlmTokenKind];

// Redis and ClickHouse round trips on localhost take a fraction of a millisecond to tens of milliseconds; the
// upper buckets catch stalls (fsync, merges, GC) that matter more than the median.
const OPERATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
// A batch may include an LLM call, so its tail reaches tens of seconds.
const BATCH_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
// Event-time latency also absorbs producer delay and window grace, so it spans milliseconds to minutes.
const END_TO_END_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
const LLM_BUCKETS = [0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120];

export interface CreateMetricsOptions {
  /** Labels added to every series, e.g. `{ instance }` when several runtimes share one scrape target. */
  defaultLabels?: Record<string, string>;
  /** Node process metrics (CPU, memory, event-loop lag, GC); off only where many registries are created. */
  processMetrics?: boolean;
}

export function createMetrics(options: CreateMetricsOptions = {}) {
  const registry = new Registry();
  if (options.defaultLabels) registry.setDefaultLabels(options.defaultLabels);
  // Left unprefixed so the standard Node.js dashboards work unchanged.
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry });
  const registers = [registry];

  return {
    registry,

    recordsConsumed: new Counter({
      name: `${PREFIX}records_consumed_total`,
      help: 'Records read from Kafka and handed to a processor',
      labelNames: partitionLabels,
      registers,
    }),
    recordsProduced: new Counter({
      name: `${PREFIX}records_produced_total`,
      help: 'Records written to Kafka by a processor',
      labelNames: partitionLabels,
      registers,
    }),
    recordsDeadLettered: new Counter({
      name: `${PREFIX}records_dead_lettered_total`,
      help: 'Records sent to the dead-letter topic, labelled by the source topic and partition',
      labelNames: partitionLabels,
      registers,
    }),
    recordsLate: new Counter({
      name: `${PREFIX}records_late_total`,
      help: 'Records that arrived after their window closed (event time beyond grace) and beyond its amendment period: sent to the late-records topic, not aggregated',
      labelNames: partitionLabels,
      registers,
    }),
    recordsAmended: new Counter({
      name: `${PREFIX}records_amended_total`,
      help: 'Late records folded into a closed window kept for amendments, whose final result was emitted again',
      labelNames: partitionLabels,
      registers,
    }),
    consumerLag: new Gauge({
      name: `${PREFIX}consumer_lag_records`,
      help: 'Records between the committed offset and the partition high watermark',
      labelNames: partitionLabels,
      registers,
    }),

    batchDuration: new Histogram({
      name: `${PREFIX}batch_duration_seconds`,
      help: 'Time to process one batch, from fetch hand-off to offsets committed',
      labelNames: processorLabels,
      buckets: BATCH_BUCKETS,
      registers,
    }),
    endToEndLatency: new Histogram({
      name: `${PREFIX}end_to_end_latency_seconds`,
      help: "Time from a record's event timestamp to the commit of its outputs",
      labelNames: processorLabels,
      buckets: END_TO_END_BUCKETS,
      registers,
    }),
    rebalances: new Counter({
      name: `${PREFIX}rebalances_total`,
      help: 'Consumer-group rebalances this member took part in',
      labelNames: processorLabels,
      registers,
    }),
    transactionsCommitted: new Counter({
      name: `${PREFIX}transactions_committed_total`,
      help: 'Kafka transactions committed',
      labelNames: processorLabels,
      registers,
    }),
    transactionsAborted: new Counter({
      name: `${PREFIX}transactions_aborted_total`,
      help: 'Kafka transactions aborted',
      labelNames: processorLabels,
      registers,
    }),

    stateOperationDuration: new Histogram({
      name: `${PREFIX}state_operation_duration_seconds`,
      help: 'Duration of state-store (Redis) operations',
      labelNames: operationLabels,
      buckets: OPERATION_BUCKETS,
      registers,
    }),
    stateOperationErrors: new Counter({
      name: `${PREFIX}state_operation_errors_total`,
      help: 'State-store (Redis) operations that failed',
      labelNames: operationLabels,
      registers,
    }),
    sinkOperationDuration: new Histogram({
      name: `${PREFIX}sink_operation_duration_seconds`,
      help: 'Duration of sink (ClickHouse) operations',
      labelNames: operationLabels,
      buckets: OPERATION_BUCKETS,
      registers,
    }),
    sinkOperationErrors: new Counter({
      name: `${PREFIX}sink_operation_errors_total`,
      help: 'Sink (ClickHouse) operations that failed',
      labelNames: operationLabels,
      registers,
    }),

    llmRequestDuration: new Histogram({
      name: `${PREFIX}llm_request_duration_seconds`,
      help: 'Duration of LLM API requests',
      labelNames: llmCallLabels,
      buckets: LLM_BUCKETS,
      registers,
    }),
    llmRequestErrors: new Counter({
      name: `${PREFIX}llm_request_errors_total`,
      help: 'LLM API requests that failed',
      labelNames: llmCallLabels,
      registers,
    }),
    llmTokens: new Counter({
      name: `${PREFIX}llm_tokens_total`,
      help: 'LLM tokens by kind: input, output, cache_read, cache_write',
      labelNames: llmTokenLabels,
      registers,
    }),
    llmCost: new Counter({
      name: `${PREFIX}llm_cost_usd_total`,
      help: 'Estimated LLM spend in US dollars',
      labelNames: llmCallLabels,
      registers,
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
