/**
 * The runtime's LLM service: alert analysis and hourly digests through Anthropic, with model tiering, prompt
 * caching, strict output validation, budgets, retries, a circuit breaker and an audit record per call.
 * See docs/llm.md.
 */
import type { Config } from '../config/index.ts';

export { createLlm, LlmMode, NO_API_KEY_REASON, type AnalyzeContext, type CreateLlmOptions, type Llm } from './service.ts';
export {
  clampSeverity,
  exceedsRules,
  rulesOnlyAnalysis,
  rulesOnlyDigest,
  RULES_ONLY,
  severities,
  severityRank,
  type DigestRequest,
  type DigestSummary,
  type FindingAnalysis,
  type LlmFinding,
  type Severity,
} from './finding.ts';
export { auditRecord, LlmOutcome, type LlmCallRecord, type LlmMetrics } from './audit.ts';
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
export { BATCH_PRICE_FACTOR, costUsd, defaultModelTiers, defaultPrices, modelFor, type ModelPrice, type ModelTiers, type TokenUsage } from './models.ts';
export { classifyApiError, isSpendLimit, LlmCallError, parseRetryAfterMs } from './call-error.ts';
export { parseAnalysis, parseDigest, type AnalysisOutput, type DigestOutput } from './output.ts';
export {
  ANALYSIS_FENCE,
  analysisPrompt,
  DEFAULT_RULES_TEXT,
  DIGEST_FENCE,
  digestPrompt,
  inputTokenUpperBound,
  MAX_FIELD_CHARS,
  MAX_SUMMARY_CHARS,
  MAX_SYMBOL_CHARS,
  MAX_UNTRUSTED_CHARS,
  promptHash,
  quoteUntrusted,
} from './prompt.ts';

/** The connection settings of the LLM service, from the loaded config. */
export function llmConnection(config: Config): { apiKey: string; baseUrl: string } {
  return { apiKey: config.anthropic.apiKey, baseUrl: config.anthropic.baseUrl };
}
