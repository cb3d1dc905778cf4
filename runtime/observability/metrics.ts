/**
 * The metrics one runtime exposes on /metrics. Each runtime gets its own registry rather than prom-client's global
 * one, so several runtimes (and tests) can live in one process without "metric already registered" clashes.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type GaugeConfiguration } from 'prom-client';

const PREFIX = 'agent_streams_';

const partitionLabels = ['processor', 'topic', 'partition'] as const;
const processorLabels = ['processor'] as const;
const operationLabels = ['operation'] as const;
const llmCallLabels = ['model', 'agent'] as const;
const llmTokenLabels = ['model', 'agent', 'kind'] as const;
const agentLabels = ['agent'] as const;

/** Reads a value where it lives (a member's health, a writer's buffer, a budget in Redis) when /metrics is scraped. */
export type Sampler = () => void | Promise<void>;

/**
 * A gauge whose value is read at scrape time by the samplers its owners register, so it is never stale and costs
 * nothing between scrapes. A failing sampler leaves the last value in place rather than failing the whole scrape.
 */
export type SampledGauge<T extends string> = Gauge<T> & {
  /** Registers `sampler`; the returned function unregisters it (call it when the owner stops). */
  sampleWith(sampler: Sampler): () => void;
};

function sampledGauge<T extends string>(configuration: GaugeConfiguration<T>): SampledGauge<T> {
  const samplers = new Set<Sampler>();
  const gauge = new Gauge<T>({
    ...configuration,
    async collect() {
      for (const sampler of samplers) {
        try {
          await sampler();
        } catch {
          // keep the last value: a scrape must not fail because one source is away
        }
      }
    },
  });
  return Object.assign(gauge, {
    sampleWith(sampler: Sampler): () => void {
      samplers.add(sampler);
      return () => void samplers.delete(sampler);
    },
  });
}

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
      help: "Records between the group's committed offset and the partition's end offset, read from the broker on a timer (metrics.lagIntervalMs) for every partition of the group's inputs, so it keeps rising while a member stalls. Every member of a group reports the same partitions: aggregate with max by (processor, topic, partition)",
      labelNames: partitionLabels,
      registers,
    }),
    consumerLagSampled: new Gauge({
      name: `${PREFIX}consumer_lag_sampled_timestamp_seconds`,
      help: 'When the consumer lag of a group was last read from the broker (epoch seconds)',
      labelNames: processorLabels,
      registers,
    }),
    memberReady: sampledGauge({
      name: `${PREFIX}member_ready`,
      help: 'Whether this member reports ready on /readyz (1) or not (0)',
      labelNames: processorLabels,
      registers,
    }),
    memberLive: sampledGauge({
      name: `${PREFIX}member_live`,
      help: 'Whether this member reports live on /healthz (1) or not (0)',
      labelNames: processorLabels,
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
    stateKeys: new Gauge({
      name: `${PREFIX}state_keys`,
      help: "State keys a task holds in Redis (counted by the store's apply script; keys that expire by TTL are counted until the task's next rebuild)",
      labelNames: ['processor', 'partition'] as const,
      registers,
    }),
    stateBytes: new Gauge({
      name: `${PREFIX}state_bytes`,
      help: 'Bytes of state values a task holds in Redis (JSON; counted like agent_streams_state_keys)',
      labelNames: ['processor', 'partition'] as const,
      registers,
    }),
    windowsOpen: new Gauge({
      name: `${PREFIX}windows_open`,
      help: 'Windowed state keys with a window still waiting to close (the size of the due set)',
      labelNames: ['processor', 'partition'] as const,
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
    sinkBufferedRows: sampledGauge({
      name: `${PREFIX}sink_buffered_rows`,
      help: "Rows held by the sink's ClickHouse writer: buffered, queued and in flight",
      labelNames: processorLabels,
      registers,
    }),
    sinkBufferedBytes: sampledGauge({
      name: `${PREFIX}sink_buffered_bytes`,
      help: "Bytes of JSON held by the sink's ClickHouse writer: buffered, queued and in flight",
      labelNames: processorLabels,
      registers,
    }),
    findings: new Counter({
      name: `${PREFIX}findings_total`,
      help: 'Findings sunk to ClickHouse, by agent and severity (a record sunk again after a crash counts again)',
      labelNames: ['agent', 'severity'] as const,
      registers,
    }),
    alerts: new Counter({
      name: `${PREFIX}alerts_total`,
      help: 'Alerts sunk to ClickHouse, by severity',
      labelNames: ['severity'] as const,
      registers,
    }),
    digestLastHour: new Gauge({
      name: `${PREFIX}digest_last_hour_timestamp_seconds`,
      help: 'Start of the newest hour a digest was sunk for, per portfolio (epoch seconds)',
      labelNames: ['portfolio'] as const,
      registers,
    }),

    ingestRequests: new Counter({
      name: `${PREFIX}ingest_requests_total`,
      help: 'HTTP ingest requests answered, by status code',
      labelNames: ['status'] as const,
      registers,
    }),
    ingestEvents: new Counter({
      name: `${PREFIX}ingest_events_total`,
      help: 'Events in accepted HTTP ingest requests',
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
    llmBudgetLimit: sampledGauge({
      name: `${PREFIX}llm_budget_limit_tokens`,
      help: 'LLM token budget of an agent type for the current hour (fleet-wide)',
      labelNames: agentLabels,
      registers,
    }),
    llmBudgetUsed: sampledGauge({
      name: `${PREFIX}llm_budget_used_tokens`,
      help: 'LLM tokens an agent type has used or reserved in the current hour, fleet-wide (read from the budget store at scrape time)',
      labelNames: agentLabels,
      registers,
    }),
    llmBudgetRemaining: sampledGauge({
      name: `${PREFIX}llm_budget_remaining_tokens`,
      help: 'LLM tokens an agent type may still use in the current hour, fleet-wide',
      labelNames: agentLabels,
      registers,
    }),
    llmCircuitState: sampledGauge({
      name: `${PREFIX}llm_circuit_state`,
      help: "The LLM circuit breaker's state: 1 for the current one of closed, open, half-open; 0 for the others",
      labelNames: ['state'] as const,
      registers,
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
