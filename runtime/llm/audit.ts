/**
 * Every LLM call — sent, failed, or refused before sending — leaves one audit record shaped like a row of the
 * `llm_calls` table (infra/clickhouse/migrations/0005_llm_calls.sql and 0007_llm_calls_trace.sql), so the runtime
 * can batch them into ClickHouse as they are. A call here is one HTTP request (a retry is a new call with its own id), or one refusal, or one
 * request of a message batch.
 */
import { randomUUID } from 'node:crypto';
import type { Metrics } from '../observability/metrics.ts';
import { LlmTokenKind } from '../observability/metrics.ts';
import type { TokenUsage } from './models.ts';

export const LlmOutcome = {
  OK: 'ok',
  INVALID_OUTPUT: 'invalid-output',
  RATE_LIMITED: 'rate-limited',
  OVERLOADED: 'overloaded',
  TIMEOUT: 'timeout',
  SPEND_LIMIT: 'spend-limit',
  BUDGET_EXHAUSTED: 'budget-exhausted',
  CIRCUIT_OPEN: 'circuit-open',
  ERROR: 'error',
  RULES_ONLY: 'rules-only',
} as const;
export type LlmOutcome = (typeof LlmOutcome)[keyof typeof LlmOutcome];

/** The model id of an answer no model wrote (a caller's fallback), in audit rows and in the answers callers build. */
export const RULES_ONLY = 'rules-only';

/** Outcomes of requests that reached the API and failed there (the ones counted as request errors). */
export const failedRequestOutcomes: ReadonlySet<LlmOutcome> = new Set([
  LlmOutcome.RATE_LIMITED,
  LlmOutcome.OVERLOADED,
  LlmOutcome.TIMEOUT,
  LlmOutcome.SPEND_LIMIT,
  LlmOutcome.ERROR,
]);

/** One row of `llm_calls`; field names are the column names (a type alias, so it is a Record<string, unknown>). */
export type LlmCallRecord = {
  call_id: string;
  agent: string;
  model: string;
  input_tokens: number;
  output_tokens: number;
  cache_read_tokens: number;
  cache_write_tokens: number;
  cost_usd: number;
  latency_ms: number;
  /** sha256 (hex) of the prompt (system blocks and messages); empty when no prompt was built. */
  prompt_hash: string;
  outcome: LlmOutcome;
  /** Call time, epoch seconds (DateTime). */
  created_at: number;
  /** Call time, epoch ms. */
  created_at_ms: number;
  /** W3C trace id of the call's span ('' when tracing is off): joins the row to its trace (docs/tracing.md). */
  trace_id: string;
  /** The record the call served (the caller's `recordId`; the fleet's analyses: the finding, which its alert lists in `finding_ids`). */
  finding_id: string;
};

export type LlmMetrics = Pick<Metrics, 'llmTokens' | 'llmCost' | 'llmRequestDuration' | 'llmRequestErrors'> &
  Partial<Pick<Metrics, 'llmBudgetLimit' | 'llmBudgetUsed' | 'llmBudgetRemaining' | 'llmCircuitState'>>;

export interface AuditFields {
  agent: string;
  model: string;
  usage: TokenUsage;
  costUsd: number;
  latencyMs: number;
  promptHash: string;
  outcome: LlmOutcome;
  /** Wall-clock time the call started, epoch ms. */
  startedAtMs: number;
  /** Trace id of the call's span, when traced. */
  traceId?: string;
  /** The record the call served (`finding_id`, the column's name from the fleet that first used it). */
  recordId?: string;
}

export function auditRecord(fields: AuditFields): LlmCallRecord {
  return {
    call_id: randomUUID(),
    agent: fields.agent,
    model: fields.model,
    input_tokens: fields.usage.input,
    output_tokens: fields.usage.output,
    cache_read_tokens: fields.usage.cacheRead,
    cache_write_tokens: fields.usage.cacheWrite,
    cost_usd: fields.costUsd,
    latency_ms: Math.max(0, Math.round(fields.latencyMs)),
    prompt_hash: fields.promptHash,
    outcome: fields.outcome,
    created_at: Math.floor(fields.startedAtMs / 1000),
    created_at_ms: Math.floor(fields.startedAtMs),
    trace_id: fields.traceId ?? '',
    finding_id: fields.recordId ?? '',
  };
}

/**
 * Counts a record into the metrics. `sent` says whether an HTTP request was made for it: only those have a duration
 * (refusals and batch items do not).
 */
export function recordMetrics(metrics: LlmMetrics | undefined, record: LlmCallRecord, sent: boolean): void {
  if (metrics === undefined) return;
  const labels = { model: record.model, agent: record.agent };
  const tokens: Array<[LlmTokenKind, number]> = [
    [LlmTokenKind.INPUT, record.input_tokens],
    [LlmTokenKind.OUTPUT, record.output_tokens],
    [LlmTokenKind.CACHE_READ, record.cache_read_tokens],
    [LlmTokenKind.CACHE_WRITE, record.cache_write_tokens],
  ];
  for (const [kind, n] of tokens) if (n > 0) metrics.llmTokens.inc({ ...labels, kind }, n);
  if (record.cost_usd > 0) metrics.llmCost.inc(labels, record.cost_usd);
  if (sent) metrics.llmRequestDuration.observe(labels, record.latency_ms / 1000);
  if (failedRequestOutcomes.has(record.outcome)) metrics.llmRequestErrors.inc(labels);
}
