/**
 * The parts of the LLM service that the Messages path (service.ts) and the Batches path (batches.ts) share, and the
 * one rule for what a failed call does to the budget and the circuit.
 */
import type Anthropic from '@anthropic-ai/sdk';
import type { Usage } from '@anthropic-ai/sdk/resources/messages';
import type { RetryPolicy, Sleep } from '../retry.ts';
import { ErrorCode } from '../errors.ts';
import type { AuditFields, LlmCallRecord } from './audit.ts';
import { LlmOutcome } from './audit.ts';
import type { Budget, BudgetAmount, Reservation, ReserveResult } from './budget.ts';
import { LlmCallError } from './call-error.ts';
import type { CircuitBreaker, CircuitPermit } from './circuit.ts';
import type { ModelPrice, TokenUsage } from './models.ts';
import type { Semaphore } from './semaphore.ts';

export interface LlmCore {
  client: Anthropic;
  budget: Budget;
  circuit: CircuitBreaker;
  semaphore: Semaphore;
  prices: Readonly<Record<string, ModelPrice>>;
  retryPolicy: RetryPolicy;
  timeoutMs: number;
  spendLimitCooldownMs: number;
  now: () => number;
  sleep: Sleep;
  log: (line: string) => void;
  /** Builds the record, hands it to `onAudit` and counts it into the metrics. */
  audit(fields: AuditFields, sent: boolean): LlmCallRecord;
  classify(error: unknown): LlmCallError;
}

export function usageOf(usage: Usage): TokenUsage {
  return {
    input: usage.input_tokens,
    output: usage.output_tokens,
    cacheRead: usage.cache_read_input_tokens ?? 0,
    cacheWrite: usage.cache_creation_input_tokens ?? 0,
    cacheWrite1h: usage.cache_creation?.ephemeral_1h_input_tokens ?? 0,
  };
}

export const nothingUsed: Readonly<BudgetAmount> = Object.freeze({ tokens: 0, microUsd: 0 });

/** A budget store that fails must not let a call through unaccounted: the call is refused instead. */
export async function reserveSafely(
  core: LlmCore,
  agent: string,
  amount: BudgetAmount,
): Promise<ReserveResult | LlmCallError> {
  try {
    return await core.budget.reserve(agent, amount);
  } catch (error) {
    return new LlmCallError(
      ErrorCode.LLM_API_ERROR,
      LlmOutcome.ERROR,
      `budget store unavailable: ${error instanceof Error ? error.message : String(error)}`,
      {
        cause: error,
      },
    );
  }
}

/**
 * Settles a reservation. If the store fails, the reservation simply stays in place: the budget then counts the
 * worst case, which wastes some of it but never overspends.
 */
export async function settleSafely(core: LlmCore, reservation: Reservation, actual: BudgetAmount): Promise<void> {
  if (actual.tokens > reservation.amount.tokens || actual.microUsd > reservation.amount.microUsd) {
    core.log(
      `llm: usage ${actual.tokens} tokens / ${actual.microUsd} µ$ exceeded its reservation ${reservation.amount.tokens} / ${reservation.amount.microUsd} for agent ${reservation.bucket.agent}; the input bound is wrong`,
    );
  }
  try {
    await core.budget.settle(reservation, actual);
  } catch (error) {
    core.log(
      `llm: could not settle a budget reservation (${error instanceof Error ? error.message : String(error)}); it stays reserved`,
    );
  }
}

/**
 * What a failed call tells the circuit: a spend limit opens it at once for the long cool-down; rate limits,
 * overload, timeouts and server faults count towards opening it; our own bad requests and cancellations say
 * nothing about the API's health.
 */
export function circuitVerdict(core: LlmCore, permit: CircuitPermit, error: LlmCallError): void {
  switch (error.outcome) {
    case LlmOutcome.SPEND_LIMIT:
      core.circuit.trip(error.reason, core.spendLimitCooldownMs);
      return;
    case LlmOutcome.RATE_LIMITED:
    case LlmOutcome.OVERLOADED:
    case LlmOutcome.TIMEOUT:
      core.circuit.failure(permit, error.reason);
      return;
    default:
      if (error.code === ErrorCode.LLM_API_ERROR && error.retriable) core.circuit.failure(permit, error.reason);
      else core.circuit.release(permit);
  }
}

export async function withSlot<T>(core: LlmCore, signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
  const release = await core.semaphore.acquire(signal);
  try {
    return await fn();
  } finally {
    release();
  }
}
