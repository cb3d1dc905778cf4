/**
 * Completions through the Message Batches API: half the price of the Messages API, for work that can wait (the
 * fleet's hourly digests). One batch per call: reserve each request's worst case, create the batch, poll its status with backoff, read the
 * results (JSONL, in any order, matched by custom_id), settle each reservation with its actual usage. Any request
 * that cannot be answered — refused by the budget or the circuit, errored, expired, invalid — gets a rules-only
 * answer (the request's `fallback`) that says why; the others are unaffected.
 *
 * Unlike a message, a batch is not retried after a timeout or a lost connection on create: it may exist already,
 * and a second one would be paid twice. Its reservations then stay charged.
 */
import { performance } from 'node:perf_hooks';
import type { MessageBatch, MessageBatchIndividualResponse } from '@anthropic-ai/sdk/resources/messages/batches';
import { AgentStreamsError, ErrorCode } from '../errors.ts';
import { backoffMs, withRetry, type RetryPolicy } from '../retry.ts';
import { LlmOutcome } from './audit.ts';
import type { Reservation } from './budget.ts';
import { settledAmount, toMicroUsd } from './budget.ts';
import { isRetriableLlmError, LlmCallError } from './call-error.ts';
import { circuitVerdict, nothingUsed, reserveSafely, settleSafely, usageOf, withSlot, type LlmCore } from './core.ts';
import { costUsd, maxCostUsd, noTokens, type ModelPrice, type TokenUsage } from './models.ts';
import type { Parsed } from './output.ts';
import { inputTokenUpperBound, promptHash, type Prompt } from './prompt.ts';
import {
  context as otelContext,
  traceHeadersOf,
  traceIdOf,
  tracingActive,
  type Context,
  type Span,
} from '../observability/tracing.ts';
import { endChatSpan, failChatSpan, startChatSpan } from './tracing.ts';

/** One request of a batch: what `complete` takes, less the model and max_tokens, which the batch sets for all. */
export interface BatchRequest<T> {
  prompt: Prompt;
  /** Validates the reply; `reply.model` is the model that answered. */
  parse: (text: string, reply: { model: string }) => Parsed<T>;
  /** The answer when no valid reply comes, with the reason (`budget exhausted: …`, `invalid output: …`, …). */
  fallback: (reason: string) => T;
  /** Budget and audit key (the `agent` of budgets and of `llm_calls`). */
  budgetKey: string;
  /** The id of the record the request serves (`llm_calls.finding_id`). */
  recordId?: string;
}

export interface BatchOptions {
  model: string;
  maxTokens: number;
  pollPolicy: RetryPolicy;
  maxPolls: number;
  /** The caller's signal combined with the service's shutdown. */
  signal: AbortSignal;
  /** The caller's own signal: only its abort is rethrown rather than answered rules-only. */
  callerSignal?: AbortSignal | undefined;
  /** Per request (by index), the trace it belongs to (its record's context); default the active context. */
  traces?: ReadonlyArray<Context | undefined>;
}

interface Item<T> {
  index: number;
  request: BatchRequest<T>;
  agent: string;
  prompt: Prompt;
  hash: string;
  bound: number;
  reservation?: Reservation;
  /** While tracing: the request's GenAI span, from the batch's creation to its result. */
  chat?: { span: Span; context: Context };
}

// Our own ids, not the caller's: always valid for the API (^[a-zA-Z0-9_-]{1,64}$) and unique within the batch.
const customId = (index: number): string => `request-${index}`;
const indexOf = (id: string): number => (/^request-(\d+)$/.test(id) ? Number(id.slice('request-'.length)) : -1);

/** The API's error object inside an errored batch result, read defensively (details are newer than the type). */
interface BatchErrorObject {
  type?: string;
  message?: string;
  details?: { error_code?: unknown } | null;
}

function outcomeOfBatchError(error: BatchErrorObject): LlmOutcome {
  const code = typeof error.details?.error_code === 'string' ? error.details.error_code : '';
  if (code.endsWith('spend_limit_reached') || error.type === 'billing_error') return LlmOutcome.SPEND_LIMIT;
  switch (error.type) {
    case 'rate_limit_error':
      return LlmOutcome.RATE_LIMITED;
    case 'overloaded_error':
      return LlmOutcome.OVERLOADED;
    case 'timeout_error':
      return LlmOutcome.TIMEOUT;
    default:
      return LlmOutcome.ERROR;
  }
}

export async function completeWithBatches<T>(
  core: LlmCore,
  requests: readonly BatchRequest<T>[],
  options: BatchOptions,
): Promise<T[]> {
  const { model, maxTokens, signal } = options;
  const out: T[] = [];
  if (requests.length === 0) return out;
  const startedAtMs = core.now();
  const price = core.prices[model] as ModelPrice;
  const items: Array<Item<T>> = requests.map((request, index) => ({
    index,
    request,
    agent: request.budgetKey,
    prompt: request.prompt,
    hash: promptHash(request.prompt),
    bound: inputTokenUpperBound(request.prompt),
  }));
  const t0 = performance.now();

  const traceOf = (item: Item<T>): Context => options.traces?.[item.index] ?? otelContext.active();
  const answer = (item: Item<T>, outcome: LlmOutcome, value: T, usage: TokenUsage = noTokens, cost = 0): void => {
    const traceId = traceIdOf(item.chat?.context ?? traceOf(item));
    const served = item.request.recordId !== undefined ? { recordId: item.request.recordId } : {};
    core.audit(
      {
        agent: item.agent,
        model,
        usage,
        costUsd: cost,
        latencyMs: performance.now() - t0,
        promptHash: item.hash,
        outcome,
        startedAtMs,
        traceId,
        ...served,
      },
      false,
    );
    out[item.index] = value;
  };
  const fallBack = (item: Item<T>, outcome: LlmOutcome, reason: string): void => {
    if (item.chat) failChatSpan(item.chat.span, outcome, reason);
    answer(item, outcome, item.request.fallback(reason));
  };

  const permit = core.circuit.tryAcquire();
  if (permit === undefined) {
    for (const item of items)
      fallBack(item, LlmOutcome.CIRCUIT_OPEN, 'circuit open: recent Anthropic API calls failed');
    return out;
  }

  const sent: Array<Item<T>> = [];
  for (const item of items) {
    const reserved = await reserveSafely(core, item.agent, {
      tokens: item.bound + maxTokens,
      microUsd: toMicroUsd(maxCostUsd(price, item.bound, maxTokens, { batch: true })),
    });
    if (reserved instanceof LlmCallError) fallBack(item, LlmOutcome.ERROR, reserved.reason);
    else if (!reserved.ok) fallBack(item, LlmOutcome.BUDGET_EXHAUSTED, reserved.reason);
    else {
      item.reservation = reserved.reservation;
      sent.push(item);
    }
  }
  if (sent.length === 0) {
    core.circuit.release(permit);
    return out;
  }
  // Traced: each request sent is a GenAI span, child of its record's context, ended with its result. The batch's HTTP
  // requests serve several traces at once; they carry the first request's span context.
  if (tracingActive())
    for (const item of sent) item.chat = startChatSpan(model, maxTokens, traceOf(item), core.client.baseURL);
  const headers = sent[0]!.chat ? { headers: traceHeadersOf(sent[0]!.chat.context) } : {};

  /** Every request still open falls back with the batch's failure; `maybeBilled` keeps its worst case charged. */
  const failAll = async (error: LlmCallError, maybeBilled: boolean, pending: Array<Item<T>>): Promise<void> => {
    for (const item of pending) {
      if (item.reservation)
        await settleSafely(core, item.reservation, maybeBilled ? item.reservation.amount : nothingUsed);
      fallBack(item, error.outcome, error.reason);
    }
  };
  const rethrowIfCallerAborted = (error: unknown): void => {
    if (options.callerSignal?.aborted) throw error;
  };
  const classified =
    <T>(fn: () => Promise<T>) =>
    async (): Promise<T> => {
      try {
        return await fn();
      } catch (error) {
        throw core.classify(error);
      }
    };

  let batch: MessageBatch;
  try {
    batch = await withRetry(
      classified(() =>
        withSlot(core, signal, () =>
          core.client.messages.batches.create(
            {
              requests: sent.map((item) => ({
                custom_id: customId(item.index),
                params: { model, max_tokens: maxTokens, system: item.prompt.system, messages: item.prompt.messages },
              })),
            },
            { signal, timeout: core.timeoutMs, ...headers },
          ),
        ),
      ),
      core.retryPolicy,
      // Only errors that prove the batch was not created (429, 529, 5xx answers) may be retried.
      {
        isRetriable: (error) => isRetriableLlmError(error) && !(error as LlmCallError).maybeBilled,
        sleep: core.sleep,
        signal,
      },
    );
  } catch (raw) {
    const error = core.classify(raw);
    // First the verdict (an abort releases the permit), so that a half-open probe is never left taken.
    circuitVerdict(core, permit, error);
    rethrowIfCallerAborted(raw);
    await failAll(error, error.maybeBilled, sent);
    return out;
  }

  // From here on the batch exists and may be billed whatever we see, so failures keep reservations charged.
  for (let poll = 1; batch.processing_status !== 'ended'; poll += 1) {
    if (poll > options.maxPolls) {
      const error = new LlmCallError(
        ErrorCode.LLM_BATCH_FAILED,
        LlmOutcome.TIMEOUT,
        `timeout: message batch ${batch.id} had not ended after ${options.maxPolls} polls`,
        { maybeBilled: true },
      );
      core.log(`llm: ${error.reason}; its requests fall back`);
      core.circuit.release(permit);
      await failAll(error, true, sent);
      return out;
    }
    await core.sleep(backoffMs(options.pollPolicy, poll), signal);
    if (signal.aborted) {
      core.circuit.release(permit);
      rethrowIfCallerAborted(
        new AgentStreamsError(ErrorCode.ABORTED, `Aborted while waiting for message batch ${batch.id}.`, {
          cause: signal.reason,
        }),
      );
      await failAll(
        new LlmCallError(ErrorCode.ABORTED, LlmOutcome.ERROR, 'closed: the LLM service has shut down'),
        true,
        sent,
      );
      return out;
    }
    const id = batch.id;
    try {
      batch = await withRetry(
        classified(() =>
          withSlot(core, signal, () =>
            core.client.messages.batches.retrieve(id, {}, { signal, timeout: core.timeoutMs, ...headers }),
          ),
        ),
        core.retryPolicy,
        { isRetriable: isRetriableLlmError, sleep: core.sleep, signal },
      );
    } catch (raw) {
      const error = core.classify(raw);
      circuitVerdict(core, permit, error);
      rethrowIfCallerAborted(raw);
      await failAll(error, true, sent);
      return out;
    }
  }
  core.circuit.success(permit);

  const pending = new Map<number, Item<T>>(sent.map((item) => [item.index, item]));
  try {
    await withSlot(core, signal, async () => {
      const results = await core.client.messages.batches.results(
        batch.id,
        {},
        { signal, timeout: core.timeoutMs, ...headers },
      );
      for await (const line of results as AsyncIterable<MessageBatchIndividualResponse>) {
        const item = pending.get(indexOf(line.custom_id));
        if (item === undefined) continue;
        pending.delete(item.index);
        await settleResult(core, item, line, price, answer, fallBack);
      }
    });
  } catch (raw) {
    rethrowIfCallerAborted(raw);
    const error = core.classify(raw);
    await failAll(
      new LlmCallError(error.code, error.outcome, `${error.reason} (reading the results of batch ${batch.id})`),
      true,
      [...pending.values()],
    );
    return out;
  }
  if (pending.size > 0) {
    await failAll(
      new LlmCallError(
        ErrorCode.LLM_BATCH_FAILED,
        LlmOutcome.ERROR,
        `error: message batch ${batch.id} returned no result for this request`,
      ),
      true,
      [...pending.values()],
    );
  }
  return out;
}

async function settleResult<T>(
  core: LlmCore,
  item: Item<T>,
  line: MessageBatchIndividualResponse,
  price: ModelPrice,
  answer: (item: Item<T>, outcome: LlmOutcome, value: T, usage?: TokenUsage, cost?: number) => void,
  fallBack: (item: Item<T>, outcome: LlmOutcome, reason: string) => void,
): Promise<void> {
  const reservation = item.reservation as Reservation;
  const result = line.result;
  switch (result.type) {
    case 'succeeded': {
      const message = result.message;
      const usage = usageOf(message.usage);
      if (item.chat) endChatSpan(item.chat.span, message, usage);
      const cost = costUsd(price, usage, { batch: true });
      await settleSafely(core, reservation, settledAmount(price, usage, { batch: true }));
      const text = message.content.flatMap((block) => (block.type === 'text' ? [block.text] : [])).join('');
      const parsed: Parsed<T> =
        message.stop_reason === 'max_tokens'
          ? { ok: false, problem: 'the reply was cut off at max_tokens' }
          : item.request.parse(text, { model: message.model });
      if (parsed.ok) answer(item, LlmOutcome.OK, parsed.value, usage, cost);
      else
        answer(
          item,
          LlmOutcome.INVALID_OUTPUT,
          item.request.fallback(`invalid output: ${parsed.problem}`),
          usage,
          cost,
        );
      return;
    }
    case 'errored': {
      // Errored, expired and canceled requests are not billed.
      await settleSafely(core, reservation, nothingUsed);
      const error = result.error.error as BatchErrorObject;
      const outcome = outcomeOfBatchError(error);
      if (outcome === LlmOutcome.SPEND_LIMIT)
        core.circuit.trip(`spend limit reached: ${error.message ?? ''}`, core.spendLimitCooldownMs);
      fallBack(
        item,
        outcome,
        `${outcome === LlmOutcome.SPEND_LIMIT ? 'spend limit reached' : outcome}: ${error.type ?? 'error'} ${error.message ?? ''}`.trim(),
      );
      return;
    }
    case 'expired':
      await settleSafely(core, reservation, nothingUsed);
      fallBack(item, LlmOutcome.TIMEOUT, 'timeout: the batch request expired before it was processed');
      return;
    default:
      await settleSafely(core, reservation, nothingUsed);
      fallBack(item, LlmOutcome.ERROR, 'error: the batch request was canceled');
  }
}
