/**
 * The runtime's generic LLM service: `complete` asks one question through the Messages API, `completeBatch` many
 * through the Message Batches API. The caller brings the prompt, a strict `parse` of the reply and a `fallback`
 * answer; every path ends in an answer — the model's, validated, or the caller's fallback with the reason — so a
 * failing or exhausted API slows nothing down and loses nothing. What to ask, and of which model, is the caller's
 * business (the market fleet's analyst lives in processors/analysis/).
 *
 * One call goes: concurrency slot → circuit permit → budget reservation → request → settle → audit. Our retry
 * policy (runtime/retry.ts) drives retries; the SDK's own are off (`maxRetries: 0`) so that there is one policy,
 * one audit record per request, and a spend-limit 429 is never retried behind our back.
 */
import { performance } from 'node:perf_hooks';
import Anthropic from '@anthropic-ai/sdk';
import type { Message } from '@anthropic-ai/sdk/resources/messages';
import { AgentStreamsError, ErrorCode } from '../errors.ts';
import { abortableSleep, retry, withRetry, type RetryPolicy, type Sleep } from '../retry.ts';
import {
  auditRecord,
  LlmOutcome,
  recordMetrics,
  RULES_ONLY,
  type AuditFields,
  type LlmCallRecord,
  type LlmMetrics,
} from './audit.ts';
import { completeWithBatches, type BatchRequest } from './batches.ts';
import {
  CACHE_TTL_SETTINGS,
  createCacheTtlChooser,
  isCacheTtlSetting,
  withCacheTtl,
  type CacheTtlSetting,
} from './cache-ttl.ts';
import { createBudget, settledAmount, toMicroUsd, validateBudgets, type BudgetStore, type Budgets } from './budget.ts';
import { classifyApiError, isRetriableLlmError, LlmCallError } from './call-error.ts';
import { CircuitState, createCircuitBreaker } from './circuit.ts';
import { circuitVerdict, nothingUsed, reserveSafely, settleSafely, usageOf, type LlmCore } from './core.ts';
import { costUsd, defaultPrices, maxCostUsd, noTokens, type ModelPrice } from './models.ts';
import type { Parsed } from './output.ts';
import { correctivePrompt, inputTokenUpperBound, promptHash, type Prompt } from './prompt.ts';
import { createSemaphore } from './semaphore.ts';
import {
  context as otelContext,
  traceHeadersOf,
  traceIdOf,
  tracingActive,
  type Context,
} from '../observability/tracing.ts';
import { endChatSpan, failChatSpan, startChatSpan } from './tracing.ts';

export const LlmMode = {
  LLM: 'llm',
  RULES_ONLY: 'rules-only',
} as const;
export type LlmMode = (typeof LlmMode)[keyof typeof LlmMode];

export interface CreateLlmOptions {
  /** Anthropic API key; empty → rules-only mode. */
  apiKey: string;
  /** Default https://api.anthropic.com (config: anthropic.baseUrl). */
  baseUrl?: string;
  /** Hourly limits per agent type; required, because spend must be bounded. */
  budgets: Budgets;
  /** Where budget usage lives; default in memory (one process). `RedisBudgetStore` shares it across a fleet. */
  budgetStore?: BudgetStore;
  /** The models callers will ask for: each must have a price, checked here at start-up rather than at the first call. */
  models?: readonly string[];
  /** Per-model prices (USD per MTok), merged over the assumed defaults. */
  prices?: Record<string, ModelPrice>;
  /**
   * TTL of the prompt cache entries a Messages request writes: `auto` (default) measures the gaps between recent
   * calls of each model and prefix and asks for 1 hour while they miss a 5-minute entry (runtime/llm/cache-ttl.ts);
   * `5m` or `1h` fixes it. It is set on every `cache_control` breakpoint of the prompt. Batches keep the prompt's own.
   */
  cacheTtl?: CacheTtlSetting;
  /** max_tokens of a completion that names none; default 600. */
  maxTokens?: number;
  /** Per-request timeout; default 30 s. */
  timeoutMs?: number;
  /** Requests in flight at once, per process; default 4. */
  concurrency?: number;
  /** Attempts and backoff for one request; default 3 attempts from 1 s, doubling, capped at 30 s. */
  retry?: RetryPolicy;
  /** A retry-after longer than this is not waited for (the call falls back); default 60 s. */
  maxRetryAfterMs?: number;
  circuit?: {
    /** Consecutive failed requests that open the circuit; default 5. */
    failureThreshold?: number;
    /** Default 30 s. */
    cooldownMs?: number;
    /** Cool-down after a spend-limit 429, which will not lift soon; default 15 min. */
    spendLimitCooldownMs?: number;
  };
  batches?: {
    /** Delay between polls of a batch's status, by poll number; default from 10 s growing ×1.5 to 5 min. */
    pollPolicy?: RetryPolicy;
    /** Polls before giving up on a batch (its requests fall back); default 300 (about 24 h). */
    maxPolls?: number;
  };
  /** Receives one record per call (the llm_calls row); must not throw (errors are logged and ignored). */
  onAudit?: (record: LlmCallRecord) => void;
  metrics?: LlmMetrics;
  log?: (line: string) => void;
  /** Wall clock (epoch ms): budget hours, audit times, retry-after dates, circuit cool-downs. */
  now?: () => number;
  /** Injected by tests so that retries and polls do not really wait. */
  sleep?: Sleep;
}

/** One question: what `complete` takes. */
export interface CompletionRequest<T> {
  prompt: Prompt;
  /** A model with a price (see `models` and `prices`). */
  model: string;
  /** Validates the reply; `reply.model` is the model that answered. Only a valid reply becomes the answer. */
  parse: (text: string, reply: { model: string }) => Parsed<T>;
  /** The answer when no valid reply comes, given why (`budget exhausted: …`, `circuit open: …`, `invalid output: …`). */
  fallback: (reason: string) => T;
  /** Budget and audit key: hourly budgets are kept per key (`budgets.perAgent`), and `llm_calls.agent` is this. */
  budgetKey: string;
  /** max_tokens; default the service's `maxTokens`. */
  maxTokens?: number;
  /**
   * One corrective turn after an invalid reply: the reply is quoted back with its problem and this instruction (e.g.
   * "Reply again with only the JSON object …"). Without it an invalid reply falls back at once.
   */
  correction?: string;
  /** The id of the record the call serves (`llm_calls.finding_id`). */
  recordId?: string;
  /** Aborting rejects with the abort (nothing is made up for a caller that has gone away). */
  signal?: AbortSignal;
  /** The trace the call belongs to (its record's); default the active context. */
  trace?: Context;
}

export interface BatchCompletionOptions {
  model: string;
  /** max_tokens of every request; default the service's `maxTokens`. */
  maxTokens?: number;
  signal?: AbortSignal;
  /** Per request (by index), the trace it belongs to. */
  traces?: ReadonlyArray<Context | undefined>;
}

export interface Llm {
  readonly mode: LlmMode;
  /** Why the service is rules-only, in rules-only mode. */
  readonly reason?: string;
  /** The circuit's state; always closed in rules-only mode, which makes no calls. */
  readonly circuitState: CircuitState;
  /** The price of a model, if the service has one (a model without a price cannot be asked). */
  priceOf(model: string): ModelPrice | undefined;
  /** One question through the Messages API; resolves to the parsed reply or the fallback, never rejects but on abort. */
  complete<T>(request: CompletionRequest<T>): Promise<T>;
  /** Many questions through the Message Batches API (half price, slow): one answer per request, in request order. */
  completeBatch<T>(requests: readonly BatchRequest<T>[], options: BatchCompletionOptions): Promise<T[]>;
  /** Aborts requests in flight; later calls answer with their fallback. Idempotent. */
  close(): void;
}

const DEFAULTS = {
  maxTokens: 600,
  timeoutMs: 30_000,
  concurrency: 4,
  maxRetryAfterMs: 60_000,
  failureThreshold: 5,
  cooldownMs: 30_000,
  spendLimitCooldownMs: 15 * 60_000,
  maxPolls: 300,
} as const;

const CLOSED_REASON = 'closed: the LLM service has shut down';

export const NO_API_KEY_REASON = 'rules-only mode: no Anthropic API key is configured (set ANTHROPIC_API_KEY)';

function validate(options: CreateLlmOptions, prices: Record<string, ModelPrice>): void {
  const problems = validateBudgets(options.budgets);
  const wholeAtLeast = (name: string, value: number | undefined, min: number): void => {
    if (value !== undefined && !(Number.isInteger(value) && value >= min))
      problems.push(`${name} must be a whole number >= ${min}, got ${value}`);
  };
  wholeAtLeast('maxTokens', options.maxTokens, 1);
  wholeAtLeast('timeoutMs', options.timeoutMs, 1);
  wholeAtLeast('concurrency', options.concurrency, 1);
  wholeAtLeast('maxRetryAfterMs', options.maxRetryAfterMs, 0);
  wholeAtLeast('circuit.failureThreshold', options.circuit?.failureThreshold, 1);
  wholeAtLeast('circuit.cooldownMs', options.circuit?.cooldownMs, 0);
  wholeAtLeast('circuit.spendLimitCooldownMs', options.circuit?.spendLimitCooldownMs, 0);
  wholeAtLeast('batches.maxPolls', options.batches?.maxPolls, 1);
  if (options.cacheTtl !== undefined && !isCacheTtlSetting(options.cacheTtl))
    problems.push(`cacheTtl must be one of ${CACHE_TTL_SETTINGS.join(', ')}, got ${JSON.stringify(options.cacheTtl)}`);
  for (const model of options.models ?? []) {
    if (typeof model !== 'string' || model === '')
      problems.push(`models must be model ids, got ${JSON.stringify(model)}`);
    else if (prices[model] === undefined)
      problems.push(`no price for model ${model}: add it to prices so that cost and USD budgets can be estimated`);
  }
  for (const [model, price] of Object.entries(prices)) {
    if (
      ![price.input, price.output, price.cacheWrite, price.cacheWrite1h, price.cacheRead].every(
        (p) => Number.isFinite(p) && p >= 0,
      )
    )
      problems.push(
        `prices.${model} must have five finite prices >= 0 (input, output, cacheWrite, cacheWrite1h, cacheRead)`,
      );
  }
  if (problems.length > 0) {
    throw new AgentStreamsError(
      ErrorCode.LLM_OPTIONS_INVALID,
      `Invalid LLM options: ${problems.join('; ')}. Fix the options passed to createLlm().`,
      {
        details: { problems },
      },
    );
  }
}

/** The model's price, or a clear error: asking a model without one is a programming error, not a transient one. */
function priced(prices: Readonly<Record<string, ModelPrice>>, model: string): ModelPrice {
  const price = prices[model];
  if (price === undefined) {
    throw new AgentStreamsError(
      ErrorCode.LLM_OPTIONS_INVALID,
      `No price for model ${model}: add it to createLlm({ prices }) (and to models, to check it at start-up).`,
      {
        details: { model },
      },
    );
  }
  return price;
}

export function createLlm(options: CreateLlmOptions): Llm {
  const prices: Record<string, ModelPrice> = { ...defaultPrices, ...options.prices };
  validate(options, prices);
  const log = options.log ?? ((line: string) => console.error(line));
  const now = options.now ?? Date.now;
  const defaultMaxTokens = options.maxTokens ?? DEFAULTS.maxTokens;

  function emit(fields: AuditFields, sent: boolean): LlmCallRecord {
    const record = auditRecord(fields);
    try {
      options.onAudit?.(record);
    } catch (error) {
      log(
        `llm: onAudit failed for call ${record.call_id} (${error instanceof Error ? error.message : String(error)}); the record is dropped`,
      );
    }
    recordMetrics(options.metrics, record, sent);
    return record;
  }

  if (!options.apiKey) {
    log(`llm: mode=rules-only — ${NO_API_KEY_REASON}; every answer is its caller's rules-only fallback`);
    return rulesOnlyLlm(prices, emit, now);
  }

  const client = new Anthropic({
    apiKey: options.apiKey,
    baseURL: options.baseUrl ?? 'https://api.anthropic.com',
    maxRetries: 0,
    timeout: options.timeoutMs ?? DEFAULTS.timeoutMs,
    // Our GenAI span (runtime/llm/tracing.ts) is the one span per request, and it sets the request's traceparent
    // itself: the SDK's own call span would be a second client span for the same request.
    openTelemetry: { traces: false, propagation: false },
  });
  const maxRetryAfterMs = options.maxRetryAfterMs ?? DEFAULTS.maxRetryAfterMs;
  const core: LlmCore = {
    client,
    budget: createBudget({
      budgets: options.budgets,
      ...(options.budgetStore ? { store: options.budgetStore } : {}),
      now,
    }),
    circuit: createCircuitBreaker({
      failureThreshold: options.circuit?.failureThreshold ?? DEFAULTS.failureThreshold,
      cooldownMs: options.circuit?.cooldownMs ?? DEFAULTS.cooldownMs,
      now,
      onTransition: (t) =>
        log(
          `llm: circuit ${t.from} → ${t.to} (${t.reason})${t.openUntilMs === undefined ? '' : ` until ${new Date(t.openUntilMs).toISOString()}`}`,
        ),
    }),
    semaphore: createSemaphore(options.concurrency ?? DEFAULTS.concurrency),
    prices,
    retryPolicy: options.retry ?? retry({ initialMs: 1_000, maxMs: 30_000, factor: 2, jitter: 0.2, maxAttempts: 3 }),
    timeoutMs: options.timeoutMs ?? DEFAULTS.timeoutMs,
    spendLimitCooldownMs: options.circuit?.spendLimitCooldownMs ?? DEFAULTS.spendLimitCooldownMs,
    now,
    sleep: options.sleep ?? abortableSleep,
    log,
    audit: emit,
    classify: (error) => classifyApiError(error, { nowMs: now(), maxRetryAfterMs }),
  };
  const cacheTtl = createCacheTtlChooser(options.cacheTtl ?? 'auto', {
    onChange: ({ model, prefix, ttl, gapMs }) =>
      log(
        `llm: prompt cache TTL ${ttl} for ${model} prefix ${prefix} (${ttl === '1h' ? 'a recent gap of' : 'recent gaps up to'} ${Math.round(gapMs / 1000)} s)`,
      ),
  });
  const shutdown = new AbortController();
  const stopSampling = sampleBudgetAndCircuit(core, options);
  log(
    `llm: mode=llm — ${options.baseUrl ?? 'https://api.anthropic.com'}${options.models?.length ? `, models ${options.models.join(', ')}` : ''}`,
  );

  // A signal of its own per call: listeners then attach to it, not to one shared signal that every call would load.
  const signalFor = (signal: AbortSignal | undefined): AbortSignal =>
    AbortSignal.any(signal ? [signal, shutdown.signal] : [shutdown.signal]);
  /** After close(): answered without a call, and still audited, so every answer leaves a row. */
  const closedAnswer = rulesOnlyAudit(emit, now);

  async function complete<T>(request: CompletionRequest<T>): Promise<T> {
    const { model, budgetKey: agent } = request;
    const trace = request.trace ?? otelContext.active();
    const served = request.recordId !== undefined ? { recordId: request.recordId } : {};
    priced(prices, model);
    if (shutdown.signal.aborted) {
      closedAnswer(agent, { ...served, traceId: traceIdOf(trace) });
      return request.fallback(CLOSED_REASON);
    }
    const maxTokens = request.maxTokens ?? defaultMaxTokens;
    const signal = signalFor(request.signal);
    // One TTL per question: its retries and corrective turn reuse the entry its first request wrote or read.
    const first = withCacheTtl(request.prompt, cacheTtl.choose(model, request.prompt, now()));
    let prompt = first;
    // At most two rounds: the question, and one corrective turn if the first reply was unusable and the caller said how.
    for (let round = 1; ; round += 1) {
      try {
        return await withRetry(
          () => callMessages(core, { agent, model, prompt, maxTokens, ...served, trace }, request.parse, signal),
          core.retryPolicy,
          {
            isRetriable: isRetriableLlmError,
            sleep: core.sleep,
            signal,
          },
        );
      } catch (error) {
        if (request.signal?.aborted) throw error;
        if (
          error instanceof LlmCallError &&
          error.outcome === LlmOutcome.INVALID_OUTPUT &&
          round === 1 &&
          request.correction !== undefined
        ) {
          prompt = correctivePrompt(
            first,
            error.replyText ?? '',
            error.reason.replace(/^invalid output: /, ''),
            request.correction,
          );
          continue;
        }
        return request.fallback(reasonOf(error));
      }
    }
  }

  return {
    mode: LlmMode.LLM,
    get circuitState() {
      return core.circuit.state;
    },
    priceOf: (model) => prices[model],
    complete,
    async completeBatch(requests, batchOptions) {
      priced(prices, batchOptions.model);
      if (shutdown.signal.aborted) {
        return requests.map((request) => {
          closedAnswer(request.budgetKey);
          return request.fallback(CLOSED_REASON);
        });
      }
      return completeWithBatches(core, requests, {
        model: batchOptions.model,
        maxTokens: batchOptions.maxTokens ?? defaultMaxTokens,
        pollPolicy:
          options.batches?.pollPolicy ?? retry({ initialMs: 10_000, maxMs: 300_000, factor: 1.5, jitter: 0.1 }),
        maxPolls: options.batches?.maxPolls ?? DEFAULTS.maxPolls,
        signal: signalFor(batchOptions.signal),
        callerSignal: batchOptions.signal,
        ...(batchOptions.traces ? { traces: batchOptions.traces } : {}),
      });
    },
    close() {
      stopSampling();
      if (!shutdown.signal.aborted)
        shutdown.abort(new AgentStreamsError(ErrorCode.ABORTED, 'The LLM service was closed.'));
    },
  };
}

/**
 * Budget and circuit gauges, read when /metrics is scraped: the budget is fleet-wide (Redis) and rolls over with the
 * wall-clock hour, the circuit turns half-open by time alone, so values pushed at call time would go stale. Agent
 * types are those with a configured budget and those that have called since start.
 */
function sampleBudgetAndCircuit(core: LlmCore, options: CreateLlmOptions): () => void {
  const metrics = options.metrics;
  if (!metrics) return () => {};
  const agents = new Set(Object.keys(options.budgets.perAgent ?? {}));
  const audit = core.audit;
  core.audit = (fields, sent) => {
    if (fields.agent !== '') agents.add(fields.agent);
    return audit(fields, sent);
  };
  // One read of the store per scrape, shared by the used and remaining gauges: a scrape collects every metric at
  // once, so the second sampler finds the first one's read still in flight.
  let reading: Promise<Map<string, number>> | undefined;
  const readUsage = (): Promise<Map<string, number>> => {
    reading ??= Promise.all([...agents].map(async (agent) => [agent, (await core.budget.used(agent)).tokens] as const))
      .then((pairs) => new Map(pairs))
      .finally(() => (reading = undefined));
    return reading;
  };
  const stops = [
    metrics.llmBudgetLimit?.sampleWith(() => {
      for (const agent of agents) metrics.llmBudgetLimit!.set({ agent }, core.budget.limitFor(agent).tokens);
    }),
    metrics.llmBudgetUsed?.sampleWith(async () => {
      for (const [agent, used] of await readUsage()) metrics.llmBudgetUsed!.set({ agent }, used);
    }),
    metrics.llmBudgetRemaining?.sampleWith(async () => {
      for (const [agent, used] of await readUsage())
        metrics.llmBudgetRemaining!.set({ agent }, Math.max(0, core.budget.limitFor(agent).tokens - used));
    }),
    metrics.llmCircuitState?.sampleWith(() => {
      const current = core.circuit.state;
      for (const state of Object.values(CircuitState))
        metrics.llmCircuitState!.set({ state }, state === current ? 1 : 0);
    }),
  ];
  return () => {
    for (const stop of stops) stop?.();
  };
}

function reasonOf(error: unknown): string {
  if (error instanceof LlmCallError) return error.reason;
  if (error instanceof AgentStreamsError && error.code === ErrorCode.ABORTED) return CLOSED_REASON;
  return `error: ${error instanceof Error ? error.message : String(error)}`;
}

interface MessagesCall {
  agent: string;
  model: string;
  prompt: Prompt;
  maxTokens: number;
  /** The record the call serves (audit: `finding_id`). */
  recordId?: string;
  /** The context the call's span is a child of. */
  trace?: Context;
}

/**
 * One request through the Messages API, and its audit record, whatever happens. Throws an LlmCallError for every
 * way it can fail, including a reply that `parse` rejects (not retriable here: the caller decides on a corrective
 * turn).
 */
async function callMessages<T>(
  core: LlmCore,
  call: MessagesCall,
  parse: (text: string, reply: { model: string }) => Parsed<T>,
  signal: AbortSignal,
): Promise<T> {
  const { agent, model, prompt, maxTokens } = call;
  const hash = promptHash(prompt);
  const served: Pick<AuditFields, 'traceId' | 'recordId'> = {
    traceId: traceIdOf(call.trace),
    ...(call.recordId !== undefined ? { recordId: call.recordId } : {}),
  };
  const release = await core.semaphore.acquire(signal);
  try {
    const startedAtMs = core.now();
    const audit = (outcome: LlmOutcome, extra: Partial<AuditFields> = {}, sent = false): void =>
      void core.audit(
        {
          agent,
          model,
          usage: noTokens,
          costUsd: 0,
          latencyMs: 0,
          promptHash: hash,
          outcome,
          startedAtMs,
          ...served,
          ...extra,
        },
        sent,
      );

    const permit = core.circuit.tryAcquire();
    if (permit === undefined) {
      audit(LlmOutcome.CIRCUIT_OPEN);
      const until = core.circuit.openUntilMs;
      throw new LlmCallError(
        ErrorCode.LLM_CIRCUIT_OPEN,
        LlmOutcome.CIRCUIT_OPEN,
        `circuit open: recent Anthropic API calls failed${until === undefined ? ' (a probe is in flight)' : `; next probe after ${new Date(until).toISOString()}`}`,
      );
    }

    const price = priced(core.prices, model);
    const inputBound = inputTokenUpperBound(prompt);
    const reserved = await reserveSafely(core, agent, {
      tokens: inputBound + maxTokens,
      microUsd: toMicroUsd(maxCostUsd(price, inputBound, maxTokens)),
    });
    if (reserved instanceof LlmCallError || !reserved.ok) {
      core.circuit.release(permit);
      if (reserved instanceof LlmCallError) {
        audit(LlmOutcome.ERROR);
        throw reserved;
      }
      audit(LlmOutcome.BUDGET_EXHAUSTED);
      throw new LlmCallError(ErrorCode.LLM_BUDGET_EXHAUSTED, LlmOutcome.BUDGET_EXHAUSTED, reserved.reason);
    }
    const { reservation } = reserved;

    // Traced: the request is a GenAI span, child of the record's context, and carries that span's traceparent.
    const chat = tracingActive()
      ? startChatSpan(model, maxTokens, call.trace ?? otelContext.active(), core.client.baseURL)
      : undefined;
    if (chat) served.traceId = traceIdOf(chat.context);
    const t0 = performance.now();
    let message: Message;
    try {
      message = await core.client.messages.create(
        { model, max_tokens: maxTokens, system: prompt.system, messages: prompt.messages },
        { signal, timeout: core.timeoutMs, ...(chat ? { headers: traceHeadersOf(chat.context) } : {}) },
      );
    } catch (raw) {
      const error = core.classify(raw);
      if (chat) failChatSpan(chat.span, error.outcome, error.reason);
      // Without an answer we cannot know what was processed: the worst case stays charged.
      await settleSafely(core, reservation, error.maybeBilled ? reservation.amount : nothingUsed);
      circuitVerdict(core, permit, error);
      audit(error.outcome, { latencyMs: performance.now() - t0 }, true);
      throw error;
    }
    const latencyMs = performance.now() - t0;
    const usage = usageOf(message.usage);
    if (chat) endChatSpan(chat.span, message, usage);
    const cost = costUsd(price, usage);
    await settleSafely(core, reservation, settledAmount(price, usage));
    core.circuit.success(permit);

    const text = message.content.flatMap((block) => (block.type === 'text' ? [block.text] : [])).join('');
    const parsed: Parsed<T> =
      message.stop_reason === 'refusal'
        ? { ok: false, problem: 'the model declined to answer' }
        : message.stop_reason === 'max_tokens'
          ? { ok: false, problem: `the reply was cut off at max_tokens (${maxTokens}) before the JSON was complete` }
          : parse(text, { model: message.model });
    audit(parsed.ok ? LlmOutcome.OK : LlmOutcome.INVALID_OUTPUT, { usage, costUsd: cost, latencyMs }, true);
    if (!parsed.ok) {
      throw new LlmCallError(
        ErrorCode.LLM_INVALID_OUTPUT,
        LlmOutcome.INVALID_OUTPUT,
        `invalid output: ${parsed.problem}`,
        { replyText: text },
      );
    }
    return parsed.value;
  } finally {
    release();
  }
}

/** The audit row of an answer given without a call (rules-only, or after close()), so every answer leaves a row. */
function rulesOnlyAudit(
  emit: (fields: AuditFields, sent: boolean) => LlmCallRecord,
  now: () => number,
): (agent: string, served?: Pick<AuditFields, 'traceId' | 'recordId'>) => void {
  return (agent, served = {}) =>
    void emit(
      {
        agent,
        model: RULES_ONLY,
        usage: noTokens,
        costUsd: 0,
        latencyMs: 0,
        promptHash: '',
        outcome: LlmOutcome.RULES_ONLY,
        startedAtMs: now(),
        ...served,
      },
      false,
    );
}

function rulesOnlyLlm(
  prices: Readonly<Record<string, ModelPrice>>,
  emit: (fields: AuditFields, sent: boolean) => LlmCallRecord,
  now: () => number,
): Llm {
  const audit = rulesOnlyAudit(emit, now);
  return {
    mode: LlmMode.RULES_ONLY,
    reason: NO_API_KEY_REASON,
    circuitState: 'closed',
    priceOf: (model) => prices[model],
    async complete(request) {
      priced(prices, request.model);
      audit(request.budgetKey, {
        ...(request.recordId !== undefined ? { recordId: request.recordId } : {}),
        traceId: traceIdOf(request.trace ?? otelContext.active()),
      });
      return request.fallback(NO_API_KEY_REASON);
    },
    async completeBatch(requests, batchOptions) {
      priced(prices, batchOptions.model);
      return requests.map((request) => {
        audit(request.budgetKey);
        return request.fallback(NO_API_KEY_REASON);
      });
    },
    close() {},
  };
}
