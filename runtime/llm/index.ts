/**
 * The runtime's generic LLM service: `complete` and `completeBatch` through Anthropic, with budgets, retries, a
 * circuit breaker, a concurrency limit, prompt-cache-friendly prompts, prices and an audit record per call. It knows
 * nothing of any fleet: callers bring their prompts, parsers and fallbacks (the market fleet's are in
 * processors/analysis/). See docs/llm.md.
 */
import type { Config } from '../config/index.ts';

export {
  createLlm,
  LlmMode,
  NO_API_KEY_REASON,
  type BatchCompletionOptions,
  type CompletionRequest,
  type CreateLlmOptions,
  type Llm,
} from './service.ts';
export type { BatchRequest } from './batches.ts';
export {
  CACHE_TTL_SETTINGS,
  cachedPrefixHash,
  createCacheTtlChooser,
  withCacheTtl,
  type CacheTtl,
  type CacheTtlChooser,
  type CacheTtlChooserOptions,
  type CacheTtlSetting,
} from './cache-ttl.ts';
export { auditRecord, LlmOutcome, RULES_ONLY, type LlmCallRecord, type LlmMetrics } from './audit.ts';
export {
  createBudget,
  HOUR_MS,
  hourStart,
  InMemoryBudgetStore,
  type Budget,
  type BudgetAmount,
  type BudgetBucket,
  type BudgetLimit,
  type Budgets,
  type BudgetStore,
  type Reservation,
} from './budget.ts';
export { DEFAULT_BUDGET_KEY_PREFIX, RedisBudgetStore, type RedisBudgetStoreOptions } from './redis-budget.ts';
export {
  circuitTransitions,
  CircuitState,
  createCircuitBreaker,
  type CircuitBreaker,
  type CircuitBreakerOptions,
  type CircuitPermit,
  type CircuitTransition,
} from './circuit.ts';
export { createSemaphore, type Semaphore } from './semaphore.ts';
export { BATCH_PRICE_FACTOR, costUsd, defaultPrices, type ModelPrice, type TokenUsage } from './models.ts';
export { classifyApiError, isSpendLimit, LlmCallError, parseRetryAfterMs } from './call-error.ts';
export { exactKeys, parseJsonObject, textProblem, type Parsed } from './output.ts';
export {
  correctivePrompt,
  cutQuoted,
  inputTokenUpperBound,
  MAX_UNTRUSTED_CHARS,
  promptHash,
  quoteList,
  quoteUntrusted,
  stablePrefix,
  TRUNCATED,
  type Prompt,
} from './prompt.ts';

/** The connection settings of the LLM service, from the loaded config. */
export function llmConnection(config: Config): { apiKey: string; baseUrl: string } {
  return { apiKey: config.anthropic.apiKey, baseUrl: config.anthropic.baseUrl };
}
