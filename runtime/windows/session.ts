/**
 * Session windows, as Kafka Streams' KStreamSessionWindowAggregate: a record at t joins every open session that
 * ends at or after t - gap and starts at or before t + gap; if it bridges several, they merge into one.
 * A session is `[first, last]`, both inclusive, and closes at `last + 1 + gap + grace`.
 *
 * One deliberate difference: a session that is already closed never takes part in a merge, even while it is still
 * stored (Kafka Streams would merge it, so that its final result, once emitted, would be followed by a bigger one).
 */
import type { AddRecordResult, KeyWindowState, StoredWindow, WindowBounds, WindowedAggregation } from './aggregate.ts';
import { windowCloseTime, type SessionWindows } from './windows.ts';

export function addToSession<V, A>(
  spec: WindowedAggregation<V, A>,
  merge: (a: A, b: A) => A,
  windows: SessionWindows,
  state: KeyWindowState<A> | undefined,
  value: V,
  timestamp: number,
  streamTime: number,
): AddRecordResult<A> {
  const joined: StoredWindow<A>[] = [];
  const kept: StoredWindow<A>[] = [];
  for (const w of state?.windows ?? []) {
    const open = windowCloseTime(windows, w.end) > streamTime;
    if (open && w.end >= timestamp - windows.gapMs && w.start <= timestamp + windows.gapMs) joined.push(w);
    else kept.push(w);
  }

  if (joined.length === 0 && windowCloseTime(windows, timestamp) <= streamTime) {
    return { state, updated: [], amended: [], late: true, droppedFrom: 1, removed: [] };
  }

  let start = timestamp;
  let end = timestamp;
  let acc: A;
  if (joined.length === 0) acc = spec.init();
  else {
    // Merged in start order; a record inside one session merges nothing.
    acc = joined[0]!.acc;
    for (const w of joined.slice(1)) acc = merge(acc, w.acc);
    start = Math.min(start, joined[0]!.start);
    end = Math.max(end, ...joined.map((w) => w.end));
  }
  acc = spec.add(acc, value, timestamp);

  const session: StoredWindow<A> = { start, end, acc, latest: end };
  const at = kept.findIndex((w) => w.start > start);
  kept.splice(at < 0 ? kept.length : at, 0, session);
  const removed: WindowBounds[] = joined
    .filter((w) => w.start !== start || w.end !== end)
    .map((w) => ({ start: w.start, end: w.end }));
  return {
    state: { windows: kept },
    updated: [{ start, end, value: acc }],
    amended: [],
    late: false,
    droppedFrom: 0,
    removed,
  };
}
