/**
 * What a topology declares beyond its processors, so that one launcher (`agent-streams run`, `sink`) runs any
 * topology: the enrichment services its processors ask (`enrich.service`), each built per member from what the
 * runtime provides, and the ClickHouse rows its topics become.
 */
import type { Config } from '../config/index.ts';
import type { EnrichmentService } from '../engine/runner.ts';
import type { Llm } from '../llm/index.ts';
import type { EventLog } from '../observability/log.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { Context } from '../observability/tracing.ts';
import type { RecordMapping } from '../../sinks/clickhouse/topic-sink.ts';

/** What the runtime gives a service factory in a member process. */
export interface ServiceDeps {
  config: Config;
  /** The topology's application: budgets are shared by its members and by no other application's. */
  application: string;
  /** The member's structured log; with `trace`, the line carries that trace's ids. */
  log(event: string, fields?: Record<string, unknown>, trace?: Context): void;
  metrics?: Metrics;
  /**
   * The member's LLM service for an Anthropic key (default `anthropic.apiKey`; an empty key is rules-only mode):
   * budgets from `llm.tokensPerHour`, shared by the application's members in Redis; `llm.concurrency` and
   * `llm.timeoutMs`; every call audited to ClickHouse `llm_calls` (flushed after each batch of requests) and counted
   * in the metrics. One service per key; the launcher closes them.
   */
  llm(options?: { apiKey?: string; models?: readonly string[] }): Llm;
}

/** Builds one enrichment service for a member, once, at start. */
export type ServiceFactory = (deps: ServiceDeps) => EnrichmentService | Promise<EnrichmentService>;

/** What a sink member gives a topology's mapping factory. */
export interface SinkDeps {
  metrics: Metrics;
  log: EventLog;
}

/** Record type → ClickHouse table mapping (see `mapTo`). */
export type SinkMappings = Readonly<Record<string, RecordMapping>>;

export interface ClickHouseSinkDeclaration {
  /** The topics `agent-streams sink` reads; each must be a topic of the topology. */
  topics: readonly string[];
  /** By record type; a function when the mappings count or log what they map. */
  mappings: SinkMappings | ((deps: SinkDeps) => SinkMappings);
}

export interface SinkDeclaration {
  clickhouse?: ClickHouseSinkDeclaration;
}
