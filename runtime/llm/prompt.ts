/**
 * Prompts as the service sends them, and the tools to build them safely. A prompt has a stable prefix — a system
 * prompt, then a rule book — sent as system blocks with `cache_control` on the last one (`stablePrefix`), so that
 * every call after the first reads the prefix from the prompt cache (a tenth of the input price) instead of paying
 * for it again. Everything that varies comes after the prefix.
 *
 * Third-party text goes inside a fence the caller names, with the instruction that it is data; `quoteUntrusted`
 * caps and escapes each quoted field so no text can close the fence or open one of ours. That lowers the odds of
 * prompt injection; what a reply may change must still be enforced in code by the caller.
 */
import { createHash } from 'node:crypto';
import type { MessageParam, TextBlockParam } from '@anthropic-ai/sdk/resources/messages';

/** The cap on third-party text per prompt: bounds the cost of one call whatever a feed sends. */
export const MAX_UNTRUSTED_CHARS = 4_000;
export const TRUNCATED = ' [truncated]';
// Controls (except tab and newline), zero-width and bidirectional overrides: invisible text that can hide a tag.
const INVISIBLE =
  // eslint-disable-next-line no-control-regex -- matching control characters is this pattern's purpose
  /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]/g;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
// Any tag of our fences, however spelled once normalised, with or without its closing bracket.
const FENCE_TAG = /<\s*\/?\s*untrusted[\s_-]*\w*(?:[^<>]{0,200}>)?/gi;

/**
 * Makes third-party text safe to put inside our fence: capped at `max` characters (before any work, so a 1 MB
 * string costs nothing), normalised (NFKC folds full-width ＜ into <), invisible characters dropped, any fence tag
 * replaced, and every remaining <, > and & escaped, so no tag at all can be opened or closed from inside.
 * `oneLine` also folds line breaks, for fields that sit on one labelled line.
 */
export function quoteUntrusted(text: string, max = MAX_UNTRUSTED_CHARS, oneLine = false): string {
  let cut = text.length > max;
  let neutral = (cut ? text.slice(0, max) : text)
    .replace(LONE_SURROGATE, '')
    .normalize('NFKC')
    .replace(INVISIBLE, '')
    .replace(FENCE_TAG, '[tag removed]')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;');
  if (oneLine) neutral = neutral.replace(/\s+/g, ' ').trim();
  if (neutral.length > max) {
    cut = true;
    neutral = cutQuoted(neutral, max);
  }
  return cut ? `${neutral}${TRUNCATED}` : neutral;
}

/** Normalising and escaping can lengthen quoted text; cut it again, never inside an escape or a surrogate pair. */
export function cutQuoted(quoted: string, max: number): string {
  return quoted
    .slice(0, max)
    .replace(/&[a-z]{0,3}$/, '')
    .replace(/[\ud800-\udbff]$/, '');
}

export interface Prompt {
  system: TextBlockParam[];
  messages: MessageParam[];
}

export function stablePrefix(systemPrompt: string, rulesText: string): TextBlockParam[] {
  return [
    { type: 'text', text: systemPrompt },
    // The breakpoint goes on the last stable block: the cache then covers system prompt and rules together.
    { type: 'text', text: rulesText, cache_control: { type: 'ephemeral' } },
  ];
}

/** The second turn after an unusable reply: quote it back and say exactly what was wrong. */
export function correctivePrompt(prompt: Prompt, replyText: string, problem: string, instruction: string): Prompt {
  return {
    system: prompt.system,
    messages: [
      ...prompt.messages,
      // The API refuses an empty assistant turn, and an empty reply is itself one of the problems worth quoting.
      { role: 'assistant', content: replyText.trim() === '' ? '(empty reply)' : replyText },
      {
        role: 'user',
        content: `Your reply could not be used: ${problem}. ${instruction}`,
      },
    ],
  };
}

/** Each item quoted on its own `- ` line (capped at `itemMax`), and the whole list capped at `totalMax`. */
export function quoteList(items: readonly string[], itemMax: number, totalMax = MAX_UNTRUSTED_CHARS): string {
  const joined = items.map((item) => `- ${quoteUntrusted(item, itemMax, true)}`).join('\n');
  if (joined === '') return '(none)';
  return joined.length > totalMax ? `${cutQuoted(joined, totalMax)}${TRUNCATED}` : joined;
}

function texts(prompt: Prompt): string[] {
  const out = prompt.system.map((b) => b.text);
  for (const message of prompt.messages) {
    if (typeof message.content === 'string') out.push(message.content);
    else for (const block of message.content) if (block.type === 'text') out.push(block.text);
  }
  return out;
}

/** sha256 of the prompt as sent (system blocks and messages, cache markers included), hex. */
export function promptHash(prompt: Prompt): string {
  return createHash('sha256')
    .update(JSON.stringify({ system: prompt.system, messages: prompt.messages }))
    .digest('hex');
}

// Framing the API adds around the request, each message and each block; generous on purpose.
const REQUEST_OVERHEAD = 32;
const MESSAGE_OVERHEAD = 16;
const BLOCK_OVERHEAD = 8;

/**
 * An upper bound on the input tokens of a prompt, with no tokenizer: a token is at least one byte of UTF-8, so the
 * byte length bounds the token count (plus framing). It overestimates English text about four times; that only
 * holds more budget in reserve while the call runs — settlement returns the difference.
 */
export function inputTokenUpperBound(prompt: Prompt): number {
  const bytes = texts(prompt).reduce((n, text) => n + Buffer.byteLength(text, 'utf8') + BLOCK_OVERHEAD, 0);
  return bytes + REQUEST_OVERHEAD + MESSAGE_OVERHEAD * prompt.messages.length;
}
