/**
 * Sliding windows, as Kafka Streams' KStreamSlidingWindowAggregate. A window is `[start, start + d]` with both ends
 * inclusive (d = timeDifference), and windows exist only where they hold a distinct set of records:
 * - every record at t has its *left* window `[t - d, t]`;
 * - a record at t has a *right* window `[t + 1, t + 1 + d]` when some record falls in it.
 * Each record therefore updates every existing window that contains it and creates at most three: its left window,
 * its right window, and the right window of the record just before it. New windows are derived from stored ones
 * (nothing stores raw records): the left window starts from the aggregate of the latest window ending before t,
 * which holds exactly the records in `[t - d, t)`, and the right window copies the aggregate of the latest-starting
 * window around t, which holds exactly the records in `(t, t + 1 + d]`.
 *
 * Differences from Kafka Streams, on purpose:
 * - Windows may start before 0 (Kafka Streams folds records earlier than d into one `[0, d]` window).
 * - A window's final result is fixed when it closes, but the window is kept, and kept up to date, for
 *   `2 × d` after its close time: later records within grace derive their windows from it. (Kafka Streams stops
 *   updating closed windows, so an open window derived from one can miss a record that arrived out of order.)
 * A record is late when even the last window that could hold it, `[t, t + d]`, is closed:
 * `streamTime >= t + d + 1 + grace`.
 */
import type {
  AddRecordResult,
  CloseWindowsResult,
  KeyWindowState,
  StoredWindow,
  WindowedAggregation,
  WindowResult,
} from './aggregate.ts';
import { windowCloseTime, type SlidingWindows } from './windows.ts';

/**
 * How long a closed sliding window is kept after its close time. A record that is not late (t > streamTime - d - 1
 * - grace) reads windows starting at t - 2d or later, so a window can go once that start is behind every such t.
 */
export function slidingRetentionMs(windows: SlidingWindows): number {
  return 2 * windows.timeDifferenceMs;
}

export function addToSlidingWindows<V, A>(
  spec: WindowedAggregation<V, A>,
  windows: SlidingWindows,
  state: KeyWindowState<A> | undefined,
  value: V,
  timestamp: number,
  streamTime: number,
): AddRecordResult<A> {
  const d = windows.timeDifferenceMs;
  const t = timestamp;
  const stored = state?.windows ?? [];
  const isClosed = (w: { end: number; closed?: true }): boolean =>
    w.closed === true || windowCloseTime(windows, w.end) <= streamTime;

  if (windowCloseTime(windows, t + d) <= streamTime) {
    const holding = stored.filter((w) => w.start <= t && t <= w.end).length;
    const ownLeftStored = stored.some((w) => w.end === t);
    return { state, updated: [], amended: [], late: true, droppedFrom: holding + (ownLeftStored ? 0 : 1), removed: [] };
  }

  const next: StoredWindow<A>[] = [...stored];
  const updated: WindowResult<A>[] = [];
  let droppedFrom = 0;

  let leftSource: StoredWindow<A> | undefined; // latest window ending before t
  let rightSource: StoredWindow<A> | undefined; // latest-starting window around t, before this record
  let previousRecord: number | undefined; // the latest record before t, as far as the windows read tell
  let leftExists = false;
  let rightExists = false;
  const starts = new Set<number>();

  /** Folds the record into a window; a closed window keeps the value it closed with as its final result. */
  const fold = (w: StoredWindow<A>): StoredWindow<A> => {
    const closed = isClosed(w);
    const entry: StoredWindow<A> = { start: w.start, end: w.end, acc: w.acc, latest: Math.max(w.latest, t) };
    if (w.closed === true)
      entry.closed = true; // its result is out already
    else if ('finalAcc' in w) entry.finalAcc = w.finalAcc as A;
    else if (closed) entry.finalAcc = structuredClone(w.acc); // closing now: keep what it closed with
    entry.acc = spec.add(w.acc, value, t);
    if (closed) droppedFrom += 1;
    else updated.push({ start: entry.start, end: entry.end, value: entry.acc });
    return entry;
  };

  /** A new window; one that is closed already is kept only as a source for later windows, and never emitted. */
  const create = (start: number, acc: A, latest: number, holdsRecord: boolean): void => {
    const entry: StoredWindow<A> = { start, end: start + d, acc, latest };
    if (isClosed(entry)) {
      entry.closed = true;
      if (holdsRecord) droppedFrom += 1;
    } else updated.push({ start, end: entry.end, value: acc });
    starts.add(start);
    const at = next.findIndex((w) => w.start > start);
    next.splice(at < 0 ? next.length : at, 0, entry);
  };

  for (let i = 0; i < stored.length; i += 1) {
    const w = stored[i]!;
    if (w.start < t - 2 * d || w.start > t + 1) continue;
    starts.add(w.start);
    if (w.end < t) {
      leftSource = w;
      previousRecord = w.latest;
    } else if (w.end === t) {
      leftExists = true;
      if (w.latest < t) previousRecord = w.latest;
      next[i] = fold(w);
    } else if (w.start <= t) {
      rightSource = w;
      next[i] = fold(w);
    } else {
      rightExists = true; // w.start === t + 1
    }
  }

  if (previousRecord !== undefined && !starts.has(previousRecord + 1) && previousRecord + 1 + d >= t) {
    create(previousRecord + 1, spec.add(spec.init(), value, t), t, true);
  }
  // When the previous record is exactly d + 1 back, its right window is this record's left window: made once.
  if (!leftExists && !starts.has(t - d)) {
    const base =
      leftSource !== undefined && previousRecord !== undefined && previousRecord >= t - d
        ? structuredClone(leftSource.acc)
        : spec.init();
    create(t - d, spec.add(base, value, t), t, true);
  }
  if (!rightExists && rightSource !== undefined && rightSource.latest > t) {
    create(t + 1, structuredClone(rightSource.acc), rightSource.latest, false);
  }

  updated.sort((a, b) => a.start - b.start);
  return { state: { windows: next }, updated, amended: [], late: false, droppedFrom, removed: [] };
}

export function closeSlidingWindows<A>(
  windows: SlidingWindows,
  state: KeyWindowState<A>,
  time: number,
): CloseWindowsResult<A> {
  const closed: WindowResult<A>[] = [];
  const kept: StoredWindow<A>[] = [];
  let changed = false;
  for (const w of state.windows) {
    const closeTime = windowCloseTime(windows, w.end);
    let entry = w;
    if (w.closed !== true && closeTime <= time) {
      closed.push({ start: w.start, end: w.end, value: 'finalAcc' in w ? (w.finalAcc as A) : w.acc });
      entry = { start: w.start, end: w.end, acc: w.acc, latest: w.latest, closed: true };
      changed = true;
    }
    if (entry.closed === true && closeTime + slidingRetentionMs(windows) <= time) {
      changed = true;
      continue;
    }
    kept.push(entry);
  }
  if (!changed) return { state, closed };
  return { state: kept.length === 0 ? undefined : { windows: kept }, closed };
}
