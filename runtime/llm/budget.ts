/**
 * LLM budgets per agent type and wall-clock hour, in tokens and optionally US dollars, that are never exceeded.
 *
 * Before a request we reserve its upper bound (input upper bound + max_tokens, and the matching cost); a request
 * whose reservation does not fit is not sent. After the response we settle: the reservation is replaced by the
 * actual usage. Because every in-flight request holds its worst case, the sum of actual usage can never pass the
 * limit, however many requests run at once. A crash between reserve and settle leaves the reservation in place,
 * which wastes budget but never overspends it.
 *
 * What counts (`settledAmount`): the token budget counts input + cache-write + output tokens, not cache reads —
 * the rule of Anthropic's input-tokens-per-minute rate limits for current models, where only uncached input and
 * cache writes count. The USD ceiling counts every kind at its own price (`costUsd`: cache reads at the read
 * price, writes at the write price). The reservation stays the worst case of both, a cache miss: the whole prompt
 * uncached + max_tokens, each input token at the dearest input-side price (`maxCostUsd`), so a cached call only
 * ever settles below what it reserved.
 *
 * Where the state lives is pluggable (`BudgetStore`): in memory for one process now, Redis later for the fleet —
 * `tryReserve` is a check-and-add that a Lua script does atomically, and `adjust` an INCRBY. Amounts are whole
 * numbers (tokens, micro-dollars) so that a Redis store needs no floating point.
 */
import { AgentStreamsError, ErrorCode } from '../errors.ts';
import { costUsd, type ModelPrice, type TokenUsage } from './models.ts';

export const HOUR_MS = 3_600_000;

export interface BudgetLimit {
  tokensPerHour: number;
  /** Optional second ceiling in US dollars (estimated from the price table). */
  usdPerHour?: number;
}

export interface Budgets {
  /** The limit of every agent type not listed in `perAgent`. */
  default: BudgetLimit;
  perAgent?: Record<string, BudgetLimit>;
}

export interface BudgetAmount {
  tokens: number;
  microUsd: number;
}

export interface BudgetBucket {
  agent: string;
  /** Start of the wall-clock hour, epoch ms. */
  hourStartMs: number;
}

export interface BudgetStore {
  /** Atomically adds `amount` to the bucket if the total stays within `limit`; says whether it did. */
  tryReserve(bucket: BudgetBucket, amount: BudgetAmount, limit: BudgetAmount): Promise<boolean>;
  /** Adds `delta` (actual − reserved: usually negative) to the bucket. */
  adjust(bucket: BudgetBucket, delta: BudgetAmount): Promise<void>;
  usage(bucket: BudgetBucket): Promise<BudgetAmount>;
}

const zero = (): BudgetAmount => ({ tokens: 0, microUsd: 0 });

/** One process's budget state. Buckets older than the previous hour are dropped, so memory stays bounded. */
export class InMemoryBudgetStore implements BudgetStore {
  readonly #buckets = new Map<string, { bucket: BudgetBucket; used: BudgetAmount }>();

  async tryReserve(bucket: BudgetBucket, amount: BudgetAmount, limit: BudgetAmount): Promise<boolean> {
    this.#prune(bucket.hourStartMs);
    const entry = this.#entry(bucket);
    // Check and add happen in one synchronous step: nothing can interleave between them in one process.
    if (entry.used.tokens + amount.tokens > limit.tokens || entry.used.microUsd + amount.microUsd > limit.microUsd)
      return false;
    entry.used.tokens += amount.tokens;
    entry.used.microUsd += amount.microUsd;
    return true;
  }

  async adjust(bucket: BudgetBucket, delta: BudgetAmount): Promise<void> {
    const entry = this.#entry(bucket);
    entry.used.tokens += delta.tokens;
    entry.used.microUsd += delta.microUsd;
  }

  async usage(bucket: BudgetBucket): Promise<BudgetAmount> {
    const entry = this.#buckets.get(keyOf(bucket));
    return entry ? { ...entry.used } : zero();
  }

  #entry(bucket: BudgetBucket): { bucket: BudgetBucket; used: BudgetAmount } {
    const key = keyOf(bucket);
    let entry = this.#buckets.get(key);
    if (entry === undefined) {
      entry = { bucket, used: zero() };
      this.#buckets.set(key, entry);
    }
    return entry;
  }

  #prune(currentHourMs: number): void {
    for (const [key, entry] of this.#buckets)
      if (entry.bucket.hourStartMs < currentHourMs - HOUR_MS) this.#buckets.delete(key);
  }
}

function keyOf(bucket: BudgetBucket): string {
  return `${bucket.agent}\u0000${bucket.hourStartMs}`;
}

export function hourStart(nowMs: number): number {
  return Math.floor(nowMs / HOUR_MS) * HOUR_MS;
}

export function toMicroUsd(usd: number): number {
  // Rounded up so that an estimate never undercounts what it stands for.
  return Math.ceil(usd * 1_000_000 - 1e-6);
}

/**
 * The tokens a call's actual usage counts against the token budget: input + cache write + output. Cache reads do
 * not count, as in Anthropic's input-tokens-per-minute rate limits; they still cost money (`settledAmount`).
 */
export function budgetTokens(usage: TokenUsage): number {
  return usage.input + usage.cacheWrite + usage.output;
}

/** What a settled call counts: `budgetTokens`, and its cost with every token kind at its own price. */
export function settledAmount(price: ModelPrice, usage: TokenUsage, options: { batch?: boolean } = {}): BudgetAmount {
  return { tokens: budgetTokens(usage), microUsd: toMicroUsd(costUsd(price, usage, options)) };
}

export interface Reservation {
  readonly bucket: BudgetBucket;
  readonly amount: BudgetAmount;
}

export type ReserveResult = { ok: true; reservation: Reservation } | { ok: false; reason: string };

export interface Budget {
  reserve(agent: string, amount: BudgetAmount): Promise<ReserveResult>;
  /** Replaces the reservation by the actual usage; a second settle of the same reservation does nothing. */
  settle(reservation: Reservation, actual: BudgetAmount): Promise<void>;
  limitFor(agent: string): BudgetAmount;
  /** What an agent has used (reserved included) in the current hour. */
  used(agent: string): Promise<BudgetAmount>;
}

export function validateBudgets(budgets: Budgets | undefined): string[] {
  if (budgets === undefined || typeof budgets !== 'object')
    return ['budgets is required: { default: { tokensPerHour } }'];
  const problems: string[] = [];
  const check = (name: string, limit: BudgetLimit | undefined): void => {
    if (limit === undefined || typeof limit !== 'object')
      return void problems.push(`budgets.${name} must be { tokensPerHour, usdPerHour? }`);
    if (!(Number.isInteger(limit.tokensPerHour) && limit.tokensPerHour >= 0))
      problems.push(`budgets.${name}.tokensPerHour must be a whole number >= 0, got ${limit.tokensPerHour}`);
    if (limit.usdPerHour !== undefined && !(Number.isFinite(limit.usdPerHour) && limit.usdPerHour >= 0)) {
      problems.push(`budgets.${name}.usdPerHour must be a finite number >= 0, got ${limit.usdPerHour}`);
    }
  };
  check('default', budgets.default);
  for (const [agent, limit] of Object.entries(budgets.perAgent ?? {})) check(`perAgent.${agent}`, limit);
  return problems;
}

export function createBudget(options: { budgets: Budgets; store?: BudgetStore; now?: () => number }): Budget {
  const problems = validateBudgets(options.budgets);
  if (problems.length > 0) {
    throw new AgentStreamsError(ErrorCode.LLM_OPTIONS_INVALID, `Invalid LLM budgets: ${problems.join('; ')}.`, {
      details: { problems },
    });
  }
  const store = options.store ?? new InMemoryBudgetStore();
  const now = options.now ?? Date.now;
  const settled = new WeakSet<Reservation>();

  const limitFor = (agent: string): BudgetAmount => {
    const limit = options.budgets.perAgent?.[agent] ?? options.budgets.default;
    return {
      tokens: limit.tokensPerHour,
      microUsd: limit.usdPerHour === undefined ? Infinity : Math.floor(limit.usdPerHour * 1_000_000),
    };
  };

  return {
    limitFor,
    async reserve(agent, amount) {
      const bucket = { agent, hourStartMs: hourStart(now()) };
      const limit = limitFor(agent);
      if (await store.tryReserve(bucket, amount, limit))
        return { ok: true, reservation: Object.freeze({ bucket, amount: { ...amount } }) };
      const used = await store.usage(bucket);
      const usd = Number.isFinite(limit.microUsd)
        ? `, $${(used.microUsd / 1e6).toFixed(4)} of $${(limit.microUsd / 1e6).toFixed(4)}`
        : '';
      return {
        ok: false,
        reason: `budget exhausted: agent ${agent} has used ${used.tokens} of ${limit.tokens} tokens${usd} this hour (${new Date(bucket.hourStartMs).toISOString()}); this request needs up to ${amount.tokens} tokens`,
      };
    },
    async settle(reservation, actual) {
      if (settled.has(reservation)) return;
      settled.add(reservation);
      await store.adjust(reservation.bucket, {
        tokens: actual.tokens - reservation.amount.tokens,
        microUsd: actual.microUsd - reservation.amount.microUsd,
      });
    },
    async used(agent) {
      return store.usage({ agent, hourStartMs: hourStart(now()) });
    },
  };
}
