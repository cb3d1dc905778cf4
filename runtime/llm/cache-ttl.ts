/**
 * Which TTL the prompt cache entries of a Messages request get: 5 minutes (the API's default; written at 1.25× the
 * input price) or 1 hour (written at 2×); a read costs 0.1× either way and refreshes the entry.
 *
 * The 1-hour TTL pays as soon as one call within the hour after a write comes more than 5 minutes after the call
 * before it: that call reads (0.1×) instead of writing again (1.25×), saving 1.15× the prefix, more than the 0.75×
 * the dearer write cost. It buys nothing when calls come less than 5 minutes apart (the 5-minute entry is read too)
 * or more than an hour apart (the 1-hour entry has expired as well), and there it only makes each write dearer.
 *
 * `auto` therefore measures the gaps between recent calls of the same model and prefix (the service's clock) and
 * picks 1 hour while one of the last `window` gaps falls between `shortGapMs` (4 minutes: a margin under 5 for
 * request latency and clock skew) and `longGapMs` (55 minutes), 5 minutes otherwise. The first call of a prefix has
 * no gap to go by and takes 5 minutes. `5m` and `1h` fix the TTL.
 */
import { createHash } from 'node:crypto';
import type { MessageParam, TextBlockParam } from '@anthropic-ai/sdk/resources/messages';
import type { Prompt } from './prompt.ts';

export type CacheTtl = '5m' | '1h';
export const CACHE_TTL_SETTINGS = ['auto', '5m', '1h'] as const;
export type CacheTtlSetting = (typeof CACHE_TTL_SETTINGS)[number];

export function isCacheTtlSetting(value: unknown): value is CacheTtlSetting {
  return typeof value === 'string' && (CACHE_TTL_SETTINGS as readonly string[]).includes(value);
}

export interface CacheTtlChooserOptions {
  /** A gap at least this long misses a 5-minute entry (with margin); default 4 min. */
  shortGapMs?: number;
  /** A gap longer than this misses a 1-hour entry too (with margin); default 55 min. */
  longGapMs?: number;
  /** How many recent gaps per prefix are looked at; default 8. */
  window?: number;
  /** Prefixes remembered at most (the least recently used is forgotten); default 1,000. */
  maxPrefixes?: number;
  /** Told when `auto` changes a prefix's TTL. */
  onChange?: (change: { model: string; prefix: string; ttl: CacheTtl; gapMs: number }) => void;
}

export interface CacheTtlChooser {
  readonly setting: CacheTtlSetting;
  /**
   * The TTL for a call of `model` with `prompt` at `nowMs`, and that call counted into the prefix's gaps. A prompt
   * without a `cache_control` breakpoint gets 5m and is not counted.
   */
  choose(model: string, prompt: Prompt, nowMs: number): CacheTtl;
}

interface History {
  lastMs: number;
  gaps: number[];
  ttl: CacheTtl;
}

export function createCacheTtlChooser(setting: CacheTtlSetting, options: CacheTtlChooserOptions = {}): CacheTtlChooser {
  const shortGapMs = options.shortGapMs ?? 4 * 60_000;
  const longGapMs = options.longGapMs ?? 55 * 60_000;
  const window = options.window ?? 8;
  const maxPrefixes = options.maxPrefixes ?? 1_000;
  // Insertion order is recency order: a prefix is re-inserted on every call.
  const histories = new Map<string, History>();
  return {
    setting,
    choose(model, prompt, nowMs) {
      if (setting !== 'auto') return setting;
      const prefix = cachedPrefixHash(prompt);
      if (prefix === undefined) return '5m';
      const key = `${model}\u0000${prefix}`;
      const known = histories.get(key);
      const history: History = known ?? { lastMs: nowMs, gaps: [], ttl: '5m' };
      if (known !== undefined) {
        histories.delete(key);
        history.gaps.push(Math.max(0, nowMs - history.lastMs));
        if (history.gaps.length > window) history.gaps.shift();
      }
      history.lastMs = nowMs;
      const paying = history.gaps.find((gap) => gap >= shortGapMs && gap <= longGapMs);
      const ttl: CacheTtl = paying !== undefined ? '1h' : '5m';
      if (ttl !== history.ttl) {
        history.ttl = ttl;
        options.onChange?.({ model, prefix, ttl, gapMs: paying ?? history.gaps[history.gaps.length - 1] ?? 0 });
      }
      histories.set(key, history);
      if (histories.size > maxPrefixes) histories.delete(histories.keys().next().value!);
      return ttl;
    },
  };
}

/** sha256 (hex, 16 chars) of the prompt up to and including its last `cache_control` block; undefined without one. */
export function cachedPrefixHash(prompt: Prompt): string | undefined {
  const blocks: Array<string | TextBlockParam> = [...prompt.system];
  for (const message of prompt.messages) {
    if (typeof message.content === 'string') blocks.push(message.content);
    else for (const block of message.content) if (block.type === 'text') blocks.push(block);
  }
  let last = -1;
  blocks.forEach((block, i) => {
    if (typeof block !== 'string' && block.cache_control != null) last = i;
  });
  if (last < 0) return undefined;
  const texts = blocks.slice(0, last + 1).map((block) => (typeof block === 'string' ? block : block.text));
  return createHash('sha256').update(JSON.stringify(texts)).digest('hex').slice(0, 16);
}

/**
 * The prompt with every `cache_control` breakpoint set to `ttl`. 5m is sent as the API's default (no `ttl` field),
 * so a request that does not ask for an hour is the request it always was.
 */
export function withCacheTtl(prompt: Prompt, ttl: CacheTtl): Prompt {
  const mark = <B extends object>(block: B): B => {
    const control = (block as { cache_control?: TextBlockParam['cache_control'] }).cache_control;
    if (control == null) return block;
    return { ...block, cache_control: ttl === '1h' ? { type: control.type, ttl } : { type: control.type } };
  };
  return {
    system: prompt.system.map(mark),
    messages: prompt.messages.map((message): MessageParam =>
      typeof message.content === 'string'
        ? message
        : ({ ...message, content: message.content.map((block) => mark(block)) } as MessageParam),
    ),
  };
}
