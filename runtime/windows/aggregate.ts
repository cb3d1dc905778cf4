/**
 * Windowed aggregation as pure functions over one record key's state. The runtime loads the key's state blob
 * (`KeyWindowState`, plain JSON data), calls `addRecord` for each record and `closeWindows` as time passes, and
 * stores what comes back; it indexes keys by `nextCloseTime`. Nothing here does I/O or reads a clock: the same
 * inputs always give the same outputs, which is what makes replays after a crash emit the same results.
 *
 * Time contract: `streamTime` is the partition's stream time after observing the record (the highest event time
 * seen so far, this record included). A `time` passed to `closeWindows` is a promise that time will not go back:
 * pass later `addRecord` calls a `streamTime` at least as high, or a window closed early (by wall clock) could be
 * opened again by a record and emitted twice.
 */
import { AgentStreamsError, ErrorCode } from '../errors.ts';
import { addToSession } from './session.ts';
import { addToSlidingWindows, closeSlidingWindows, slidingRetentionMs } from './sliding.ts';
import {
  WindowKind,
  windowCloseTime,
  windowsProblem,
  type HoppingWindows,
  type TumblingWindows,
  type Windows,
} from './windows.ts';

/**
 * What to compute per window. `add` folds one record into an accumulator; `merge` combines two sessions' accumulators
 * when a record bridges them (required for session windows). Accumulators must be JSON-serialisable plain data.
 * `add` and `merge` may return a new value or their first argument updated in place: an accumulator handed to them
 * is never shared with another window of the returned state (the input state, though, must then be treated as used up).
 */
export interface WindowedAggregation<V, A> {
  readonly window: Windows;
  init(): A;
  add(acc: A, value: V, timestamp: number): A;
  merge?(a: A, b: A): A;
}

/**
 * One window of a key's state. `end` is exclusive for tumbling and hopping windows (`start + size`), inclusive for
 * sliding windows (`start + timeDifference`) and sessions (the last record's timestamp).
 */
export interface StoredWindow<A> {
  start: number;
  end: number;
  acc: A;
  /** Highest event time folded into the window (Kafka Streams keeps the same next to each aggregate). */
  latest: number;
  /**
   * The window's final result is out. Sliding windows: returned by `closeWindows`, or already closed when a record
   * created it; kept a while, still updated, as the source later windows are derived from. Tumbling and hopping
   * windows with `amendWithinMs`: kept that long after closing, so that a late record amends the result.
   */
  closed?: true;
  /** Sliding windows only: the window's value when it closed, once records have been folded into `acc` since. */
  finalAcc?: A;
}

/** A record key's windows, sorted by start. Plain data: safe to JSON.stringify and store. */
export interface KeyWindowState<A> {
  windows: StoredWindow<A>[];
}

export interface WindowBounds {
  start: number;
  end: number;
}

export interface WindowResult<A> extends WindowBounds {
  value: A;
}

export interface AddRecordResult<A> {
  /** The key's new state; `undefined` only when a late record met no state. Unchanged (the same object) when late. */
  state: KeyWindowState<A> | undefined;
  /** The open windows the record created or changed, with their new values, sorted by start. */
  updated: WindowResult<A>[];
  /**
   * Closed windows (kept for `amendWithinMs`) the record was folded into, with their new values: emit each as an
   * amended final result.
   */
  amended: WindowResult<A>[];
  /** The record was dropped: every window that holds it, or could later hold it, is closed. Nothing changed. */
  late: boolean;
  /** How many of the record's windows were already closed and did not take it (Kafka Streams' dropped-records count). */
  droppedFrom: number;
  /** Sessions merged into the updated one, which no longer exist under their old bounds (emit tombstones for them). */
  removed: WindowBounds[];
}

export interface CloseWindowsResult<A> {
  /** What remains; `undefined` when nothing does (delete the key). The same object when nothing closed. */
  state: KeyWindowState<A> | undefined;
  /** The final results of the windows that closed, sorted by start. */
  closed: WindowResult<A>[];
}

function invalid(message: string, details: Record<string, unknown> = {}): AgentStreamsError {
  return new AgentStreamsError(ErrorCode.WINDOW_INVALID, message, { details });
}

/** Validates an aggregation spec once, at the edge, and freezes it. */
export function windowedAggregation<V, A>(spec: WindowedAggregation<V, A>): WindowedAggregation<V, A> {
  const problems: string[] = [];
  const window = windowsProblem(spec?.window);
  if (window !== undefined) problems.push(window);
  if (typeof spec?.init !== 'function') problems.push('init must be a function returning the empty accumulator');
  if (typeof spec?.add !== 'function') problems.push('add must be a function (acc, value, timestamp) => acc');
  if (spec?.merge !== undefined && typeof spec.merge !== 'function')
    problems.push('merge must be a function (a, b) => acc');
  if (window === undefined && spec.window.kind === WindowKind.SESSION && spec.merge === undefined) {
    problems.push('session windows need merge(a, b), to combine two sessions that a record bridges');
  }
  if (problems.length > 0) {
    throw invalid(`Invalid windowed aggregation: ${problems.join('; ')}.`, { problems });
  }
  return Object.freeze({ ...spec });
}

function checkTimes(timestamp: number, streamTime: number): void {
  if (!Number.isSafeInteger(timestamp) || timestamp < 0) {
    throw invalid(
      `A windowed record needs an event time in whole milliseconds >= 0, got ${timestamp}. Fix the record's timestamp or the timestamp extractor.`,
      { timestamp },
    );
  }
  if (!Number.isSafeInteger(streamTime) || streamTime < timestamp) {
    throw invalid(
      `Stream time ${streamTime} must be whole milliseconds and include the record's own time ${timestamp}: pass the stream time after observing the record.`,
      { timestamp, streamTime },
    );
  }
}

/** Starts of the tumbling or hopping windows holding `timestamp`, ascending. Windows start at 0 or later (as in Kafka Streams). */
export function timeWindowStarts(windows: TumblingWindows | HoppingWindows, timestamp: number): number[] {
  const advance = windows.kind === WindowKind.TUMBLING ? windows.sizeMs : windows.advanceMs;
  const starts: number[] = [];
  for (
    let start = timestamp - (timestamp % advance);
    start > timestamp - windows.sizeMs && start >= 0;
    start -= advance
  )
    starts.unshift(start);
  return starts;
}

function addToTimeWindows<V, A>(
  spec: WindowedAggregation<V, A>,
  windows: TumblingWindows | HoppingWindows,
  state: KeyWindowState<A> | undefined,
  value: V,
  timestamp: number,
  streamTime: number,
): AddRecordResult<A> {
  const next = [...(state?.windows ?? [])];
  const updated: WindowResult<A>[] = [];
  const amended: WindowResult<A>[] = [];
  let droppedFrom = 0;
  for (const start of timeWindowStarts(windows, timestamp)) {
    const end = start + windows.sizeMs;
    const at = next.findIndex((w) => w.start >= start);
    const existing = at >= 0 && next[at]!.start === start ? next[at] : undefined;
    const closeTime = windowCloseTime(windows, end);
    if (closeTime <= streamTime) {
      // Closed: amended while it is kept, dropped after (and never reopened if it was never stored).
      if (existing?.closed && closeTime + (windows.amendWithinMs ?? 0) > streamTime) {
        const acc = spec.add(existing.acc, value, timestamp);
        next[at] = { ...existing, acc, latest: Math.max(existing.latest, timestamp) };
        amended.push({ start, end, value: acc });
      } else droppedFrom += 1;
      continue;
    }
    const acc = spec.add(existing ? existing.acc : spec.init(), value, timestamp);
    const entry: StoredWindow<A> = {
      start,
      end,
      acc,
      latest: existing ? Math.max(existing.latest, timestamp) : timestamp,
    };
    if (existing) next[at] = entry;
    else next.splice(at < 0 ? next.length : at, 0, entry);
    updated.push({ start, end, value: acc });
  }
  if (updated.length === 0 && amended.length === 0)
    return { state, updated, amended, late: true, droppedFrom, removed: [] };
  return { state: { windows: next }, updated, amended, late: false, droppedFrom, removed: [] };
}

/**
 * Folds one record into its key's windows. Windows already closed at `streamTime` are never changed; a record that
 * belongs only to closed windows is late and changes nothing.
 */
export function addRecord<V, A>(
  spec: WindowedAggregation<V, A>,
  state: KeyWindowState<A> | undefined,
  value: V,
  timestamp: number,
  streamTime: number,
): AddRecordResult<A> {
  checkTimes(timestamp, streamTime);
  const windows = spec.window;
  switch (windows.kind) {
    case WindowKind.TUMBLING:
    case WindowKind.HOPPING:
      return addToTimeWindows(spec, windows, state, value, timestamp, streamTime);
    case WindowKind.SLIDING:
      return addToSlidingWindows(spec, windows, state, value, timestamp, streamTime);
    case WindowKind.SESSION: {
      const merge = spec.merge;
      if (typeof merge !== 'function')
        throw invalid(
          'Session windows need merge(a, b) in the aggregation, to combine two sessions that a record bridges.',
        );
      return addToSession(spec, merge, windows, state, value, timestamp, streamTime);
    }
    default:
      throw invalid(`Invalid windowed aggregation: ${windowsProblem(windows) ?? 'unknown window kind'}.`);
  }
}

/**
 * Closes the key's windows whose close time is at or before `time` (stream time, or a wall-clock-derived time: the
 * caller decides) and returns their final results, sorted by start. Closed windows leave the state, except that
 * sliding windows stay a while longer (flagged closed) because later windows are derived from them.
 */
export function closeWindows<A>(
  spec: WindowedAggregation<unknown, A>,
  state: KeyWindowState<A> | undefined,
  time: number,
): CloseWindowsResult<A> {
  if (Number.isNaN(time)) throw invalid('closeWindows needs a time, got NaN.');
  if (state === undefined) return { state, closed: [] };
  const windows = spec.window;
  if (windows.kind === WindowKind.SLIDING) return closeSlidingWindows(windows, state, time);
  const closed: WindowResult<A>[] = [];
  const kept: StoredWindow<A>[] = [];
  const amendWithinMs = windows.kind === WindowKind.SESSION ? 0 : (windows.amendWithinMs ?? 0);
  let changed = false;
  for (const w of state.windows) {
    const closeTime = windowCloseTime(windows, w.end);
    if (w.closed) {
      // Kept for amendments until its time is up.
      if (closeTime + amendWithinMs <= time) changed = true;
      else kept.push(w);
    } else if (closeTime <= time) {
      closed.push({ start: w.start, end: w.end, value: w.acc });
      changed = true;
      if (closeTime + amendWithinMs > time) kept.push({ ...w, closed: true });
    } else kept.push(w);
  }
  if (!changed) return { state, closed };
  closed.sort((a, b) => a.start - b.start || a.end - b.end);
  return { state: kept.length === 0 ? undefined : { windows: kept }, closed };
}

/**
 * The next time at which `closeWindows` would change this state: the earliest close time of its open windows, or
 * for sliding windows kept after closing, the time they may be dropped. `undefined` when there is nothing left.
 * Index the key by it, and keep the key stored at least until then.
 */
export function nextCloseTime<A>(
  spec: WindowedAggregation<unknown, A>,
  state: KeyWindowState<A> | undefined,
): number | undefined {
  let next: number | undefined;
  for (const w of state?.windows ?? []) {
    const closeTime = windowCloseTime(spec.window, w.end);
    const window = spec.window;
    const due =
      w.closed !== true
        ? closeTime
        : window.kind === WindowKind.SLIDING
          ? closeTime + slidingRetentionMs(window)
          : closeTime + (window.kind === WindowKind.SESSION ? 0 : (window.amendWithinMs ?? 0));
    if (next === undefined || due < next) next = due;
  }
  return next;
}
