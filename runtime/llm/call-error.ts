/**
 * What went wrong with one LLM call, in our terms: an AgentStreamsError with the audit outcome, whether our retry
 * policy may try again, and the server's retry-after as `retryAfterMs` (which `withRetry` honours). SDK errors are
 * classified here once, by status and the API's stable `error.details.error_code`, not by scattered checks.
 */
import { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from '@anthropic-ai/sdk';
import { AgentStreamsError, ErrorCode } from '../errors.ts';
import { LlmOutcome } from './audit.ts';

export class LlmCallError extends AgentStreamsError {
  readonly outcome: LlmOutcome;
  /** Short, stable explanation used as the rules-only `reason` (starts with the cause: "budget exhausted", …). */
  readonly reason: string;
  readonly retryAfterMs?: number;
  /** For invalid output: the reply text, so a corrective turn can quote it. */
  readonly replyText?: string;
  /** Whether the request may have been processed (and billed) by the API even though we saw no answer. */
  readonly maybeBilled: boolean;

  constructor(
    code: ErrorCode,
    outcome: LlmOutcome,
    reason: string,
    options: {
      retriable?: boolean;
      retryAfterMs?: number;
      replyText?: string;
      maybeBilled?: boolean;
      cause?: unknown;
      details?: Record<string, unknown>;
    } = {},
  ) {
    super(code, reason, {
      retriable: options.retriable ?? false,
      details: options.details ?? {},
      ...(options.cause === undefined ? {} : { cause: options.cause }),
    });
    this.name = 'LlmCallError';
    this.outcome = outcome;
    this.reason = reason;
    if (options.retryAfterMs !== undefined) this.retryAfterMs = options.retryAfterMs;
    if (options.replyText !== undefined) this.replyText = options.replyText;
    this.maybeBilled = options.maybeBilled ?? false;
  }
}

export function isLlmCallError(value: unknown): value is LlmCallError {
  return value instanceof LlmCallError;
}

/** Only our own classification decides retries: a spend-limit 429 carrying a retry-after must still not be retried. */
export function isRetriableLlmError(error: unknown): boolean {
  return error instanceof LlmCallError && error.retriable;
}

const SPEND_LIMIT_CODES: ReadonlySet<string> = new Set([
  'enforced_spend_limit_reached',
  'contract_spend_limit_reached',
  'linked_organization_spend_limit_reached',
]);
// Older responses (and the 400 "credit balance is too low") say it only in the message.
const SPEND_LIMIT_MESSAGE = /spend(ing)? limit|usage limits?|credit (balance|limit)/i;

export function isSpendLimit(error: APIError): boolean {
  if (error.errorCode !== null && SPEND_LIMIT_CODES.has(error.errorCode)) return true;
  if (error.type === 'billing_error') return true;
  const status = error.status;
  return (
    (status === 429 || status === 400 || status === 402) && SPEND_LIMIT_MESSAGE.test(error.apiMessage ?? error.message)
  );
}

/** Parses `retry-after-ms`, or `retry-after` as seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfterMs(headers: Headers | undefined, nowMs: number): number | undefined {
  const ms = headers?.get('retry-after-ms');
  if (ms && Number.isFinite(Number(ms)) && Number(ms) >= 0) return Number(ms);
  const value = headers?.get('retry-after')?.trim();
  if (!value) return undefined;
  if (/^\d+(\.\d+)?$/.test(value)) return Math.round(Number(value) * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - nowMs);
}

export interface ClassifyOptions {
  nowMs: number;
  /** A retry-after longer than this is not waited for: the call gives up and falls back instead. */
  maxRetryAfterMs: number;
}

function withRetryAfter(
  code: ErrorCode,
  outcome: LlmOutcome,
  what: string,
  error: APIError,
  options: ClassifyOptions,
): LlmCallError {
  const retryAfterMs = parseRetryAfterMs(error.headers, options.nowMs);
  const tooLong = retryAfterMs !== undefined && retryAfterMs > options.maxRetryAfterMs;
  const reason = tooLong
    ? `${what}: the API asks to retry after ${retryAfterMs} ms, more than the ${options.maxRetryAfterMs} ms we wait`
    : `${what}: ${error.status} ${error.apiMessage ?? error.message}`;
  return new LlmCallError(code, outcome, reason, {
    retriable: !tooLong,
    ...(retryAfterMs === undefined || tooLong ? {} : { retryAfterMs }),
    cause: error,
    details: { status: error.status, requestId: error.requestID ?? null, retryAfterMs: retryAfterMs ?? null },
  });
}

export function classifyApiError(error: unknown, options: ClassifyOptions): LlmCallError {
  if (error instanceof LlmCallError) return error;
  if (error instanceof AgentStreamsError && error.code === ErrorCode.ABORTED) {
    return new LlmCallError(
      ErrorCode.ABORTED,
      LlmOutcome.ERROR,
      'aborted: the LLM request was cancelled before it was sent',
      { cause: error },
    );
  }
  if (error instanceof APIUserAbortError) {
    return new LlmCallError(ErrorCode.ABORTED, LlmOutcome.ERROR, 'aborted: the LLM request was cancelled', {
      maybeBilled: true,
      cause: error,
    });
  }
  if (error instanceof APIConnectionTimeoutError) {
    return new LlmCallError(
      ErrorCode.LLM_TIMEOUT,
      LlmOutcome.TIMEOUT,
      `timeout: no answer from the Anthropic API in time`,
      {
        retriable: true,
        maybeBilled: true,
        cause: error,
      },
    );
  }
  if (error instanceof APIConnectionError) {
    return new LlmCallError(
      ErrorCode.LLM_API_ERROR,
      LlmOutcome.ERROR,
      `API error: cannot reach the Anthropic API (${error.message})`,
      {
        retriable: true,
        maybeBilled: true,
        cause: error,
      },
    );
  }
  if (error instanceof APIError) {
    const status = error.status ?? 0;
    if (isSpendLimit(error)) {
      return new LlmCallError(
        ErrorCode.LLM_SPEND_LIMIT,
        LlmOutcome.SPEND_LIMIT,
        `spend limit reached: ${error.apiMessage ?? error.message}`,
        {
          cause: error,
          details: { status, errorCode: error.errorCode, requestId: error.requestID ?? null },
        },
      );
    }
    if (status === 429)
      return withRetryAfter(ErrorCode.LLM_RATE_LIMITED, LlmOutcome.RATE_LIMITED, 'rate limited', error, options);
    if (status === 529)
      return withRetryAfter(ErrorCode.LLM_OVERLOADED, LlmOutcome.OVERLOADED, 'overloaded', error, options);
    // 408 and 409 are the API's own "try again"; 5xx are server faults. Other 4xx are our request's fault.
    const retriable = status === 408 || status === 409 || status >= 500;
    return new LlmCallError(
      ErrorCode.LLM_API_ERROR,
      LlmOutcome.ERROR,
      `API error: ${status} ${error.apiMessage ?? error.message}`,
      {
        retriable,
        cause: error,
        details: { status, type: error.type, requestId: error.requestID ?? null },
      },
    );
  }
  const message = error instanceof Error ? error.message : String(error);
  return new LlmCallError(ErrorCode.LLM_API_ERROR, LlmOutcome.ERROR, `API error: ${message}`, { cause: error });
}
