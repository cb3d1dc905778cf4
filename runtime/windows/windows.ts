/**
 * Windows are values: `tumbling({ size: '1m' })`, `hopping({ size: '5m', advance: '1m', grace: '10s' })`,
 * `sliding({ timeDifference: '30s' })`, `session({ gap: '5m' })`. Each constructor validates its options once and
 * returns a frozen plain object holding milliseconds, so the aggregation code never parses or re-checks them.
 *
 * Close rule (Kafka Streams'): a window is closed once stream time reaches its close time, `streamTime >= closeTime`,
 * where closeTime is the first instant after the window plus the grace period (see `windowCloseTime`).
 */
import { AgentStreamsError, ErrorCode } from '../errors.ts';
import { parseDuration, type Duration } from './duration.ts';

export const WindowKind = {
  TUMBLING: 'tumbling',
  HOPPING: 'hopping',
  SLIDING: 'sliding',
  SESSION: 'session',
} as const;

export type WindowKind = (typeof WindowKind)[keyof typeof WindowKind];

/** Fixed-size, non-overlapping windows `[start, start + sizeMs)` aligned to the epoch. */
export interface TumblingWindows {
  readonly kind: typeof WindowKind.TUMBLING;
  readonly sizeMs: number;
  readonly graceMs: number;
  /** How long a closed window is kept so that a late record amends its result (0: late records are dropped). */
  readonly amendWithinMs?: number;
}

/** Fixed-size windows `[start, start + sizeMs)` starting every `advanceMs` from the epoch; they overlap when advance < size. */
export interface HoppingWindows {
  readonly kind: typeof WindowKind.HOPPING;
  readonly sizeMs: number;
  readonly advanceMs: number;
  readonly graceMs: number;
  /** How long a closed window is kept so that a late record amends its result (0: late records are dropped). */
  readonly amendWithinMs?: number;
}

/** Windows `[start, start + timeDifferenceMs]` (both ends inclusive) defined by the records themselves. */
export interface SlidingWindows {
  readonly kind: typeof WindowKind.SLIDING;
  readonly timeDifferenceMs: number;
  readonly graceMs: number;
}

/** Sessions `[first, last]` (both inclusive) of records no more than `gapMs` apart. */
export interface SessionWindows {
  readonly kind: typeof WindowKind.SESSION;
  readonly gapMs: number;
  readonly graceMs: number;
}

export type Windows = TumblingWindows | HoppingWindows | SlidingWindows | SessionWindows;

/**
 * `amendWithin`: after a window has closed and emitted its final result, keep it this long (in stream time past its
 * close time). A record arriving for it meanwhile is folded in and the window's final result is emitted again,
 * amended, instead of the record being dropped as late. Past it, late records go to the late-records topic.
 */
export interface TumblingOptions {
  size: Duration;
  grace?: Duration;
  amendWithin?: Duration;
}

export interface HoppingOptions {
  size: Duration;
  advance: Duration;
  grace?: Duration;
  amendWithin?: Duration;
}

export interface SlidingOptions {
  timeDifference: Duration;
  grace?: Duration;
}

export interface SessionOptions {
  gap: Duration;
  grace?: Duration;
}

/** Reads the named durations of an options object, collecting every problem instead of stopping at the first. */
function readOptions<K extends string>(
  kind: WindowKind,
  options: unknown,
  required: readonly K[],
  optional: readonly string[] = ['grace'],
): Record<K | 'grace' | 'amendWithin', number> {
  const problems: string[] = [];
  const ms: Record<string, number> = {};
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    problems.push(`options must be an object like { ${required.map((name) => `${name}: '5s'`).join(', ')} }`);
  } else {
    const given = options as Record<string, unknown>;
    const known: readonly string[] = [...required, ...optional];
    for (const name of Object.keys(given)) {
      if (!known.includes(name)) problems.push(`unknown option "${name}" (known: ${known.join(', ')})`);
    }
    for (const name of required) {
      if (given[name] === undefined) {
        problems.push(`${name} is required`);
        continue;
      }
      const parsed = parseDuration(given[name]);
      if (!parsed.ok) problems.push(`${name}: ${parsed.reason}`);
      else if (parsed.ms <= 0) problems.push(`${name} must be greater than 0, got ${JSON.stringify(given[name])}`);
      else ms[name] = parsed.ms;
    }
    for (const name of optional) {
      if (given[name] === undefined) ms[name] = 0;
      else {
        const parsed = parseDuration(given[name]);
        if (parsed.ok) ms[name] = parsed.ms;
        else problems.push(`${name}: ${parsed.reason}`);
      }
    }
  }
  if (problems.length > 0) throw invalid(kind, problems, options);
  return ms as Record<K | 'grace' | 'amendWithin', number>;
}

function invalid(kind: WindowKind, problems: string[], options: unknown): AgentStreamsError {
  return new AgentStreamsError(
    ErrorCode.WINDOW_INVALID,
    `Invalid ${kind} windows: ${problems.join('; ')}. Fix the options passed to ${kind}().`,
    {
      details: { kind, problems, options },
    },
  );
}

export function tumbling(options: TumblingOptions): TumblingWindows {
  const { size, grace, amendWithin } = readOptions(WindowKind.TUMBLING, options, ['size'], ['grace', 'amendWithin']);
  return Object.freeze({ kind: WindowKind.TUMBLING, sizeMs: size, graceMs: grace, amendWithinMs: amendWithin });
}

export function hopping(options: HoppingOptions): HoppingWindows {
  const { size, advance, grace, amendWithin } = readOptions(
    WindowKind.HOPPING,
    options,
    ['size', 'advance'],
    ['grace', 'amendWithin'],
  );
  if (advance > size) {
    throw invalid(
      WindowKind.HOPPING,
      [`advance (${advance} ms) must not exceed size (${size} ms), or records would fall between windows`],
      options,
    );
  }
  return Object.freeze({
    kind: WindowKind.HOPPING,
    sizeMs: size,
    advanceMs: advance,
    graceMs: grace,
    amendWithinMs: amendWithin,
  });
}

export function sliding(options: SlidingOptions): SlidingWindows {
  const { timeDifference, grace } = readOptions(WindowKind.SLIDING, options, ['timeDifference']);
  return Object.freeze({ kind: WindowKind.SLIDING, timeDifferenceMs: timeDifference, graceMs: grace });
}

export function session(options: SessionOptions): SessionWindows {
  const { gap, grace } = readOptions(WindowKind.SESSION, options, ['gap']);
  return Object.freeze({ kind: WindowKind.SESSION, gapMs: gap, graceMs: grace });
}

const isDurationMs = (value: unknown, positive: boolean): boolean =>
  typeof value === 'number' && Number.isSafeInteger(value) && (positive ? value > 0 : value >= 0);

/**
 * Checks a value that claims to be windows (for specs assembled by hand or read from elsewhere) and explains what
 * is wrong; returns nothing when it is valid.
 */
export function windowsProblem(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null)
    return 'window must be a value made by tumbling(), hopping(), sliding() or session()';
  const w = value as Record<string, unknown>;
  const fields: Record<WindowKind, readonly string[]> = {
    tumbling: ['sizeMs'],
    hopping: ['sizeMs', 'advanceMs'],
    sliding: ['timeDifferenceMs'],
    session: ['gapMs'],
  };
  const kind = w.kind;
  if (typeof kind !== 'string' || !Object.hasOwn(fields, kind)) {
    return `window kind ${JSON.stringify(kind)} is not one of ${Object.values(WindowKind).join(', ')}; make windows with tumbling(), hopping(), sliding() or session()`;
  }
  for (const field of fields[kind as WindowKind]) {
    if (!isDurationMs(w[field], true))
      return `${kind} window ${field} must be whole milliseconds > 0, got ${JSON.stringify(w[field])}`;
  }
  if (!isDurationMs(w.graceMs, false))
    return `${kind} window graceMs must be whole milliseconds >= 0, got ${JSON.stringify(w.graceMs)}`;
  if (
    (kind === WindowKind.TUMBLING || kind === WindowKind.HOPPING) &&
    w.amendWithinMs !== undefined &&
    !isDurationMs(w.amendWithinMs, false)
  ) {
    return `${kind} window amendWithinMs must be whole milliseconds >= 0, got ${JSON.stringify(w.amendWithinMs)}`;
  }
  if (kind === WindowKind.HOPPING && (w.advanceMs as number) > (w.sizeMs as number))
    return 'hopping window advanceMs must not exceed sizeMs';
  return undefined;
}

/**
 * The stream time at which a window closes: it is closed when `streamTime >= windowCloseTime(...)`, and from then
 * on records can no longer change it. This is Kafka Streams' rule, written with the first instant after the window:
 * - tumbling, hopping: `end` is exclusive → `end + grace`
 *   (Kafka Streams: open while `windowEnd > streamTime - grace`);
 * - sliding: `end` is inclusive → `end + 1 + grace`
 *   (Kafka Streams: open while `windowEnd >= streamTime - grace`);
 * - session: `end` (the last record) is inclusive, and a record up to `gap` later can still extend the session →
 *   `end + 1 + gap + grace` (Kafka Streams: closed once `end < streamTime - grace - gap`).
 */
export function windowCloseTime(windows: Windows, end: number): number {
  switch (windows.kind) {
    case WindowKind.TUMBLING:
    case WindowKind.HOPPING:
      return end + windows.graceMs;
    case WindowKind.SLIDING:
      return end + 1 + windows.graceMs;
    case WindowKind.SESSION:
      return end + 1 + windows.gapMs + windows.graceMs;
  }
}
