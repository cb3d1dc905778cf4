/**
 * The one retry policy. Every component that talks to Kafka, Redis, ClickHouse, the registry or the LLM retries
 * through `withRetry` with a policy value, so backoff behaviour is tuned in one place instead of in ad-hoc loops.
 */
import { AgentStreamsError, ErrorCode } from './errors.ts';

export interface RetryOptions {
  /** Delay after the first failure. */
  initialMs?: number;
  /** Upper bound on any backoff delay (a server's retry-after may exceed it). */
  maxMs?: number;
  /** Growth per failed attempt. */
  factor?: number;
  /** Fraction of the delay randomised either way, so that many clients do not retry in lockstep. */
  jitter?: number;
  /** Total attempts including the first; `Infinity` retries until success or abort. */
  maxAttempts?: number;
}

export type RetryPolicy = Readonly<Required<RetryOptions>>;

export function retry(options: RetryOptions = {}): RetryPolicy {
  const policy = {
    initialMs: options.initialMs ?? 100,
    maxMs: options.maxMs ?? 10_000,
    factor: options.factor ?? 2,
    jitter: options.jitter ?? 0.2,
    maxAttempts: options.maxAttempts ?? Infinity,
  };
  const problems: string[] = [];
  if (!Number.isFinite(policy.initialMs) || policy.initialMs < 0)
    problems.push(`initialMs must be a finite number >= 0, got ${policy.initialMs}`);
  if (!Number.isFinite(policy.maxMs) || policy.maxMs < policy.initialMs)
    problems.push(`maxMs must be finite and >= initialMs, got ${policy.maxMs}`);
  if (!Number.isFinite(policy.factor) || policy.factor < 1)
    problems.push(`factor must be a finite number >= 1, got ${policy.factor}`);
  if (!(policy.jitter >= 0 && policy.jitter <= 1))
    problems.push(`jitter must be between 0 and 1, got ${policy.jitter}`);
  if (!(policy.maxAttempts === Infinity || (Number.isInteger(policy.maxAttempts) && policy.maxAttempts >= 1))) {
    problems.push(`maxAttempts must be a whole number >= 1 or Infinity, got ${policy.maxAttempts}`);
  }
  if (problems.length > 0) {
    throw new AgentStreamsError(
      ErrorCode.RETRY_POLICY_INVALID,
      `Invalid retry policy: ${problems.join('; ')}. Fix the options passed to retry().`,
      {
        details: { problems, options },
      },
    );
  }
  return Object.freeze(policy);
}

/**
 * Delay before the attempt after failed attempt number `attempt` (1-based): initialMs·factor^(attempt−1), spread by
 * ±jitter, never above maxMs. `random` is injectable so the spread can be tested exactly.
 */
export function backoffMs(policy: RetryPolicy, attempt: number, random: () => number = Math.random): number {
  if (!Number.isInteger(attempt) || attempt < 1) {
    throw new AgentStreamsError(
      ErrorCode.RETRY_POLICY_INVALID,
      `backoffMs needs a whole attempt number >= 1, got ${attempt}.`,
    );
  }
  // Capping before jitter keeps delays spread out even once growth has hit the ceiling.
  const base = Math.min(policy.maxMs, policy.initialMs * policy.factor ** (attempt - 1));
  const spread = 1 + policy.jitter * (2 * random() - 1);
  return Math.round(Math.min(policy.maxMs, Math.max(0, base * spread)));
}

export type Sleep = (ms: number, signal?: AbortSignal) => Promise<void>;

export interface WithRetryOptions {
  isRetriable?: (error: unknown) => boolean;
  /** Called before each wait; `attempt` is the attempt that just failed. */
  onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
  signal?: AbortSignal;
  /** Must resolve early (not reject) when `signal` aborts; injected by tests so nothing really waits. */
  sleep?: Sleep;
}

/** A server- or sink-supplied hint (HTTP 429 Retry-After, sink backpressure) that outranks our own backoff. */
export function retryAfterMsOf(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null || !('retryAfterMs' in error)) return undefined;
  const value = error.retryAfterMs;
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : undefined;
}

export function isRetriableByDefault(error: unknown): boolean {
  return (error instanceof AgentStreamsError && error.retriable) || retryAfterMsOf(error) !== undefined;
}

export const abortableSleep: Sleep = (ms, signal) =>
  new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });

/**
 * Runs `fn` until it succeeds, a non-retriable error occurs, attempts run out or `signal` aborts. Errors are rethrown
 * as they are (never wrapped), so callers see the real failure and its cause chain.
 */
export async function withRetry<T>(
  fn: (attempt: number) => T | Promise<T>,
  policy: RetryPolicy,
  options: WithRetryOptions = {},
): Promise<T> {
  const { isRetriable = isRetriableByDefault, onRetry, signal, sleep = abortableSleep } = options;
  if (signal?.aborted) {
    throw new AgentStreamsError(ErrorCode.ABORTED, 'Operation aborted before its first attempt.', {
      cause: signal.reason,
    });
  }
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await fn(attempt);
    } catch (error) {
      if (signal?.aborted || attempt >= policy.maxAttempts || !isRetriable(error)) throw error;
      const delayMs = Math.max(backoffMs(policy, attempt), retryAfterMsOf(error) ?? 0);
      onRetry?.(error, attempt, delayMs);
      await sleep(delayMs, signal);
      if (signal?.aborted) throw error;
    }
  }
}
