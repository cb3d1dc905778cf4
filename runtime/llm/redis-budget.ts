/**
 * LLM budgets shared by every process of a fleet: the `BudgetStore` of budget.ts in Redis, so that N members of
 * one application never spend more than the budget together.
 *
 * Layout: one hash per bucket (application, agent type, wall-clock hour), fields `tokens` and `micro_usd`:
 *   <keyPrefix>:{<application>:<agent>:<hour, ISO to the hour>}    e.g. as:llm-budget:{markets:news:2026-01-05T10}
 * The braces are a Redis Cluster hash tag: a bucket and anything ever stored beside it stay in one slot, so its
 * scripts stay single-slot. A bucket expires `retentionMs` (2 h) after its hour ends, or after Redis's own clock
 * if the caller's is that far behind, so a key is never written already expired.
 *
 * Why "never exceeded" still holds across processes: `tryReserve` is one Lua script (check both ceilings, then add
 * both amounts), so Redis runs reservations from every process one at a time, and every in-flight request holds
 * its worst case exactly as in one process. `adjust` is one script too: a release (negative delta) takes the bucket
 * down by at most what it holds — never below zero, and never on a bucket that no longer exists (expired or lost
 * with Redis), where it would otherwise create credit that no reservation backs. An overshoot (positive delta:
 * usage above its reservation, which means the input bound is wrong) is added in full, since it was really spent.
 *
 * Failure policy — fail closed, after a short retry:
 * - `tryReserve` and `usage` retry connection failures and command time-outs with `withRetry` (default 3 attempts,
 *   100 ms doubling), then throw. The LLM service turns the throw into a refusal: no request is sent, the answer is
 *   rules-only with `reason: 'budget store unavailable: …'` (audit outcome `error`). A retried reservation whose
 *   first attempt did reach Redis is counted twice: that wastes budget, never overspends it.
 * - `adjust` is never retried, by us or by ioredis (`autoResendUnfulfilledCommands: false`): a release applied
 *   twice would hand back budget that is still in use. If it fails, the reservation stays charged at its worst case.
 * - Commands time out after `commandTimeoutMs` (2 s), and queue for at most one reconnection
 *   (`maxRetriesPerRequest: 1`), so an unreachable Redis delays a call by about a second, not indefinitely.
 */
import { Redis } from 'ioredis';
import { AgentStreamsError, ErrorCode } from '../errors.ts';
import { abortableSleep, retry, withRetry, type RetryPolicy, type Sleep } from '../retry.ts';
import { HOUR_MS, type BudgetAmount, type BudgetBucket, type BudgetStore } from './budget.ts';

/**
 * KEYS[1] bucket. ARGV: tokens, micro-USD, token limit, micro-USD limit (-1: none), expire-at (epoch ms), retention.
 * Returns 1 when reserved, 0 when it does not fit (nothing changed).
 */
const RESERVE = `
local used = redis.call('HMGET', KEYS[1], 'tokens', 'micro_usd')
local tokens, microUsd = tonumber(ARGV[1]), tonumber(ARGV[2])
if tonumber(used[1] or '0') + tokens > tonumber(ARGV[3]) then return 0 end
local usdLimit = tonumber(ARGV[4])
if usdLimit >= 0 and tonumber(used[2] or '0') + microUsd > usdLimit then return 0 end
redis.call('HINCRBY', KEYS[1], 'tokens', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'micro_usd', ARGV[2])
local t = redis.call('TIME')
local floor = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[6])
redis.call('PEXPIREAT', KEYS[1], string.format('%d', math.max(tonumber(ARGV[5]), floor)))
return 1
`;

/**
 * KEYS[1] bucket. ARGV: token delta, micro-USD delta, expire-at, retention. A negative delta releases at most what
 * the bucket holds; on a missing bucket only a positive delta (overshoot) is written. Returns 1 if anything changed.
 */
const ADJUST = `
local dTokens, dMicroUsd = tonumber(ARGV[1]), tonumber(ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 0 then
  if dTokens < 0 then dTokens = 0 end
  if dMicroUsd < 0 then dMicroUsd = 0 end
  if dTokens == 0 and dMicroUsd == 0 then return 0 end
end
local used = redis.call('HMGET', KEYS[1], 'tokens', 'micro_usd')
local tokens = math.max(0, tonumber(used[1] or '0') + dTokens)
local microUsd = math.max(0, tonumber(used[2] or '0') + dMicroUsd)
redis.call('HSET', KEYS[1], 'tokens', string.format('%d', tokens), 'micro_usd', string.format('%d', microUsd))
local t = redis.call('TIME')
local floor = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[4])
redis.call('PEXPIREAT', KEYS[1], string.format('%d', math.max(tonumber(ARGV[3]), floor)))
return 1
`;

export const DEFAULT_BUDGET_KEY_PREFIX = 'as:llm-budget';

export interface RedisBudgetStoreOptions {
  /** Redis URL (config `redis.url`). The store opens and owns its connection, configured for the policy above. */
  url: string;
  /** The topology's application: budgets are per application, agent type and hour. */
  application: string;
  /** Default `as:llm-budget`. */
  keyPrefix?: string;
  /** How long a bucket outlives its hour; default 2 h. */
  retentionMs?: number;
  /** Retries of `tryReserve` and `usage` when Redis does not answer; default 3 attempts from 100 ms, doubling. */
  retry?: RetryPolicy;
  /** Per-command time-out; default 2 s. */
  commandTimeoutMs?: number;
  /** Connection problems, once per outage (not per reconnection attempt). */
  log?: (line: string) => void;
  /** Injected by tests so that retries do not really wait. */
  sleep?: Sleep;
}

const DEFAULT_RETENTION_MS = 2 * HOUR_MS;
const DEFAULT_COMMAND_TIMEOUT_MS = 2_000;

export class RedisBudgetStore implements BudgetStore {
  readonly application: string;
  readonly #redis: Redis;
  readonly #keyPrefix: string;
  readonly #retentionMs: number;
  readonly #retry: RetryPolicy;
  readonly #sleep: Sleep;
  readonly #endpoint: string;
  #closed = false;

  constructor(options: RedisBudgetStoreOptions) {
    const problems: string[] = [];
    if (typeof options.application !== 'string' || options.application === '')
      problems.push('application must be a non-empty string');
    if (options.keyPrefix !== undefined && (typeof options.keyPrefix !== 'string' || options.keyPrefix === ''))
      problems.push('keyPrefix must be a non-empty string');
    const wholeAtLeast = (name: string, value: number | undefined, min: number): void => {
      if (value !== undefined && !(Number.isSafeInteger(value) && value >= min))
        problems.push(`${name} must be a whole number >= ${min}, got ${value}`);
    };
    wholeAtLeast('retentionMs', options.retentionMs, 1);
    wholeAtLeast('commandTimeoutMs', options.commandTimeoutMs, 1);
    let endpoint = '';
    try {
      const url = new URL(options.url);
      endpoint = `${url.hostname}:${url.port || '6379'}`; // never the password
    } catch {
      problems.push('url must be a redis:// or rediss:// URL');
    }
    if (problems.length > 0) {
      throw new AgentStreamsError(
        ErrorCode.LLM_OPTIONS_INVALID,
        `Invalid Redis budget store options: ${problems.join('; ')}.`,
        { details: { problems } },
      );
    }
    this.application = options.application;
    this.#keyPrefix = options.keyPrefix ?? DEFAULT_BUDGET_KEY_PREFIX;
    this.#retentionMs = options.retentionMs ?? DEFAULT_RETENTION_MS;
    this.#retry = options.retry ?? retry({ initialMs: 100, maxMs: 1_000, factor: 2, jitter: 0.2, maxAttempts: 3 });
    this.#sleep = options.sleep ?? abortableSleep;
    this.#endpoint = endpoint;
    this.#redis = new Redis(options.url, {
      lazyConnect: true,
      connectTimeout: options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS,
      commandTimeout: options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS,
      maxRetriesPerRequest: 1,
      // A command cut off by a dropped connection may have run: resending it could release a reservation twice.
      autoResendUnfulfilledCommands: false,
    });
    const log = options.log;
    let down = false;
    this.#redis.on('error', (error: unknown) => {
      if (down || this.#closed) return;
      down = true;
      log?.(
        `llm: budget store Redis ${endpoint} unreachable (${error instanceof Error ? error.message : String(error)}); LLM calls are refused until it answers`,
      );
    });
    this.#redis.on('ready', () => {
      if (down) log?.(`llm: budget store Redis ${endpoint} is back`);
      down = false;
    });
  }

  /** The Redis key of a bucket. */
  keyOf(bucket: BudgetBucket): string {
    const hour = new Date(bucket.hourStartMs).toISOString().slice(0, 13);
    return `${this.#keyPrefix}:{${this.application}:${bucket.agent}:${hour}}`;
  }

  async tryReserve(bucket: BudgetBucket, amount: BudgetAmount, limit: BudgetAmount): Promise<boolean> {
    const tokens = wholeNumber('amount.tokens', amount.tokens, 0);
    const microUsd = wholeNumber('amount.microUsd', amount.microUsd, 0);
    const tokenLimit = wholeNumber('limit.tokens', limit.tokens, 0);
    const usdLimit = limit.microUsd === Infinity ? '-1' : wholeNumber('limit.microUsd', limit.microUsd, 0);
    const reserved = await this.#retrying('reserve', () =>
      this.#redis.eval(
        RESERVE,
        1,
        this.keyOf(bucket),
        tokens,
        microUsd,
        tokenLimit,
        usdLimit,
        this.#expireAt(bucket),
        String(this.#retentionMs),
      ),
    );
    return reserved === 1;
  }

  async adjust(bucket: BudgetBucket, delta: BudgetAmount): Promise<void> {
    const tokens = wholeNumber('delta.tokens', delta.tokens);
    const microUsd = wholeNumber('delta.microUsd', delta.microUsd);
    if (tokens === '0' && microUsd === '0') return;
    try {
      await this.#connected();
      await this.#redis.eval(
        ADJUST,
        1,
        this.keyOf(bucket),
        tokens,
        microUsd,
        this.#expireAt(bucket),
        String(this.#retentionMs),
      );
    } catch (error) {
      throw this.#unavailable('adjust', error);
    }
  }

  async usage(bucket: BudgetBucket): Promise<BudgetAmount> {
    const [tokens, microUsd] = await this.#retrying('usage', () =>
      this.#redis.hmget(this.keyOf(bucket), 'tokens', 'micro_usd'),
    );
    return { tokens: Number(tokens ?? 0), microUsd: Number(microUsd ?? 0) };
  }

  /** Closes the connection; later calls fail (and so are refused). Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#redis.status === 'wait' || this.#redis.status === 'end') {
      this.#redis.disconnect();
      return;
    }
    try {
      await this.#redis.quit();
    } catch {
      this.#redis.disconnect();
    }
  }

  #expireAt(bucket: BudgetBucket): string {
    return String(bucket.hourStartMs + HOUR_MS + this.#retentionMs);
  }

  async #connected(): Promise<void> {
    if (this.#closed) throw new Error('the budget store is closed');
    // lazyConnect: the first command connects; a failed connect leaves ioredis reconnecting in the background.
    if (this.#redis.status === 'wait') await this.#redis.connect();
  }

  async #retrying<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await withRetry(
        async () => {
          await this.#connected();
          return fn();
        },
        this.#retry,
        { isRetriable: (error) => !this.#closed && !isScriptError(error), sleep: this.#sleep },
      );
    } catch (error) {
      throw this.#unavailable(operation, error);
    }
  }

  #unavailable(operation: string, error: unknown): AgentStreamsError {
    if (error instanceof AgentStreamsError) return error;
    const cause = error instanceof Error ? error.message : String(error);
    return new AgentStreamsError(
      ErrorCode.LLM_API_ERROR,
      `Redis ${this.#endpoint} did not answer the budget ${operation} (${cause})`,
      {
        retriable: false,
        cause: error,
        details: { store: 'redis', endpoint: this.#endpoint, operation },
      },
    );
  }
}

/** Whole numbers only, as decimal strings: the scripts use HINCRBY and must never see `1e+21`. */
function wholeNumber(name: string, value: number, min = Number.MIN_SAFE_INTEGER): string {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new AgentStreamsError(
      ErrorCode.LLM_OPTIONS_INVALID,
      `Budget ${name} must be a safe whole number${min === 0 ? ' >= 0' : ''}, got ${value}.`,
    );
  }
  return String(value);
}

/** A reply error from the script itself (a bug, not an outage): retrying cannot help. */
function isScriptError(error: unknown): boolean {
  return error instanceof Error && error.name === 'ReplyError';
}
