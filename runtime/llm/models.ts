/**
 * What a model's tokens cost. Which model answers is the caller's choice (each `complete` names its model); the
 * service refuses a model it has no price for, because it could not bound spend in USD.
 */

/** US dollars per million tokens. A cache write is priced by its TTL: `cacheWrite` for 5 minutes, `cacheWrite1h` for an hour. */
export interface ModelPrice {
  input: number;
  output: number;
  /** A 5-minute cache write (the API's default TTL). */
  cacheWrite: number;
  /** A 1-hour cache write (`cache_control.ttl: '1h'`). */
  cacheWrite1h: number;
  cacheRead: number;
}

/**
 * ASSUMED list prices, not read from any API: Anthropic publishes prices on its website only. Haiku-class
 * $1 / $5, Sonnet-class $3 / $15, Opus-class $5 / $25 per MTok in / out; a 5-minute cache write costs 1.25× input,
 * a 1-hour cache write 2× input, and a cache read 0.1× input. Newer model ids are assumed to keep their class's price. Override with
 * `createLlm({ prices })` when the price list changes; docs/llm.md repeats these.
 */
const haiku: ModelPrice = { input: 1, output: 5, cacheWrite: 1.25, cacheWrite1h: 2, cacheRead: 0.1 };
const sonnet: ModelPrice = { input: 3, output: 15, cacheWrite: 3.75, cacheWrite1h: 6, cacheRead: 0.3 };
const opus: ModelPrice = { input: 5, output: 25, cacheWrite: 6.25, cacheWrite1h: 10, cacheRead: 0.5 };

export const defaultPrices: Readonly<Record<string, ModelPrice>> = Object.freeze({
  'claude-haiku-5-5': haiku,
  'claude-haiku-4-5': haiku,
  'claude-haiku-4-5-20251001': haiku,
  'claude-sonnet-5-5': sonnet,
  'claude-sonnet-5': sonnet,
  'claude-sonnet-4-6': sonnet,
  'claude-sonnet-4-5': sonnet,
  'claude-sonnet-4-5-20250929': sonnet,
  'claude-opus-5-5': opus,
  'claude-opus-5': opus,
  'claude-opus-4-8': opus,
  'claude-opus-4-7': opus,
  'claude-opus-4-6': opus,
  'claude-opus-4-5': opus,
});

/** The Message Batches API bills every token kind at half price. */
export const BATCH_PRICE_FACTOR = 0.5;

export interface TokenUsage {
  input: number;
  output: number;
  cacheRead: number;
  /** Every token written to the prompt cache, whatever its TTL. */
  cacheWrite: number;
  /** The part of `cacheWrite` written with a 1-hour TTL (the API's `cache_creation.ephemeral_1h_input_tokens`); absent: none. */
  cacheWrite1h?: number;
}

export const noTokens: Readonly<TokenUsage> = Object.freeze({ input: 0, output: 0, cacheRead: 0, cacheWrite: 0 });

export function costUsd(price: ModelPrice, usage: TokenUsage, options: { batch?: boolean } = {}): number {
  const written1h = Math.min(usage.cacheWrite1h ?? 0, usage.cacheWrite);
  const perMTok =
    usage.input * price.input +
    usage.output * price.output +
    (usage.cacheWrite - written1h) * price.cacheWrite +
    written1h * price.cacheWrite1h +
    usage.cacheRead * price.cacheRead;
  return (perMTok / 1_000_000) * (options.batch ? BATCH_PRICE_FACTOR : 1);
}

/**
 * The most a request can cost: every input token at the dearer of the input and cache-write prices (we cannot know
 * in advance which prefix is cached) and the full `max_tokens` of output.
 */
export function maxCostUsd(
  price: ModelPrice,
  inputTokens: number,
  maxTokens: number,
  options: { batch?: boolean } = {},
): number {
  const perMTok =
    inputTokens * Math.max(price.input, price.cacheWrite, price.cacheWrite1h, price.cacheRead) +
    maxTokens * price.output;
  return (perMTok / 1_000_000) * (options.batch ? BATCH_PRICE_FACTOR : 1);
}
