/**
 * The building blocks of strict reply validation. A caller's `parse` (see `complete`) checks that the reply is
 * exactly the JSON object it asked for — right keys, right types, bounded lengths, no extra keys — before any of it
 * is used. The only leniency is a surrounding markdown code fence, which says nothing about the content and would
 * otherwise cost a second call.
 */

/** What a `parse` function returns: the value, or what is wrong with the reply (quoted back in a corrective turn). */
export type Parsed<T> = { ok: true; value: T } | { ok: false; problem: string };

/** The reply as one JSON object (one surrounding ```json fence tolerated). */
export function parseJsonObject(text: string): Parsed<Record<string, unknown>> {
  const trimmed = text.trim();
  const fenced = /^```(?:json)?[ \t]*\n([\s\S]*?)\n?```$/.exec(trimmed);
  const body = fenced?.[1] ?? trimmed;
  if (!body.startsWith('{'))
    return { ok: false, problem: 'the reply is not a JSON object (it does not start with "{")' };
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch (error) {
    return {
      ok: false,
      problem: `the reply is not valid JSON (${error instanceof Error ? error.message : String(error)})`,
    };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return { ok: false, problem: 'the reply is not a JSON object' };
  return { ok: true, value: value as Record<string, unknown> };
}

/** The problem with an object's keys (missing first, then extra), or undefined when they are exactly `keys`. */
export function exactKeys(value: Record<string, unknown>, keys: readonly string[]): string | undefined {
  const missing = keys.filter((k) => !(k in value));
  const extra = Object.keys(value).filter((k) => !keys.includes(k));
  if (missing.length > 0) return `missing key(s) ${missing.join(', ')}`;
  if (extra.length > 0) return `unexpected key(s) ${extra.join(', ')}`;
  return undefined;
}

/** The problem with a text field (not a string, blank, longer than `max`), or undefined. */
export function textProblem(value: unknown, name: string, max: number): string | undefined {
  if (typeof value !== 'string') return `${name} must be a string`;
  if (value.trim() === '') return `${name} must not be empty`;
  if (value.length > max) return `${name} is longer than ${max} characters`;
  return undefined;
}
