import { describe, expect, it } from 'vitest';
import {
  addRecord,
  closeWindows,
  nextCloseTime,
  sliding,
  windowCloseTime,
  type KeyWindowState,
  type WindowedAggregation,
  type WindowResult,
} from '../../../runtime/windows/index.ts';
import { deepFreeze, drive, random, roundTrip } from './drive.ts';

/** Each window holds the sorted timestamps of its records, so a test sees exactly which records it took. */
function spec(timeDifference: number, grace = 0): WindowedAggregation<number, number[]> {
  return {
    window: sliding({ timeDifference, grace }),
    init: () => [],
    add: (acc, value) => [...acc, value].sort((a, b) => a - b),
  };
}

const records = (...times: number[]): Array<readonly [number, number]> => times.map((t) => [t, t] as const);
const shape = (results: WindowResult<number[]>[]): Array<[number, number, number[]]> =>
  results.map((r) => [r.start, r.end, r.value]);

describe('sliding windows', () => {
  it('make a left window per record and a right window where later records fall (worked example, d = 10)', () => {
    const run = drive(spec(10), records(100, 105, 112), {
      closeAsStreamTimeAdvances: false,
      flushAt: Number.POSITIVE_INFINITY,
    });
    expect(run.steps.map((s) => shape(s.result.updated))).toEqual([
      [[90, 100, [100]]],
      [
        [95, 105, [100, 105]], // 105's left window, derived from [90, 100]
        [101, 111, [105]], // 100's right window, now that a record falls in it
      ],
      [
        [102, 112, [105, 112]], // 112's left window, derived from [101, 111]
        [106, 116, [112]], // 105's right window
      ],
    ]);
    expect(shape(run.closed)).toEqual([
      [90, 100, [100]],
      [95, 105, [100, 105]],
      [101, 111, [105]],
      [102, 112, [105, 112]],
      [106, 116, [112]],
    ]);
  });

  it('include both ends: records exactly d apart share a window, d + 1 apart do not', () => {
    const apart = drive(spec(10), records(100, 110), { closeAsStreamTimeAdvances: false });
    expect(shape(apart.steps[1]!.result.updated)).toEqual([
      [100, 110, [100, 110]],
      [101, 111, [110]],
    ]);
    const further = drive(spec(10), records(100, 111), { closeAsStreamTimeAdvances: false });
    expect(shape(further.steps[1]!.result.updated)).toEqual([[101, 111, [111]]]);
  });

  it('create the right window of an out-of-order record from the window around it', () => {
    const run = drive(spec(10, 100), records(100, 108, 104), { closeAsStreamTimeAdvances: false });
    expect(shape(run.steps[2]!.result.updated)).toEqual([
      [94, 104, [100, 104]],
      [98, 108, [100, 104, 108]],
      [101, 111, [104, 108]],
      [105, 115, [108]], // 104's right window holds what follows it
    ]);
  });

  it('close at end + 1 + grace and drop a record once even [t, t + d] has closed', () => {
    const s = spec(10);
    const state = deepFreeze(roundTrip(addRecord(s, undefined, 100, 100, 100).state));
    expect(nextCloseTime(s, state)).toBe(101);
    expect(windowCloseTime(s.window, 100)).toBe(101);
    // At stream time 100, [90, 100] is still open: a record at 90 joins it.
    expect(shape(addRecord(s, state, 90, 90, 100).updated)).toEqual([
      [90, 100, [90, 100]],
      [91, 101, [100]], // and 90's right window
    ]);
    // A record at 89 could only be in windows ending by 99, all closed at stream time 100.
    expect(addRecord(s, state, 89, 89, 100)).toEqual({
      state,
      updated: [],
      amended: [],
      late: true,
      droppedFrom: 1,
      removed: [],
    });
  });

  it('keep an out-of-order record within grace in the windows derived later (where Kafka Streams would lose it)', () => {
    // d = 10, grace 5. By the time 59 arrives (stream time 70), [51, 61] has closed; 59 is not late because
    // [59, 69] is still open. Kafka Streams leaves 59 out of the closed [51, 61] and then derives 65's left window
    // [55, 65] from it, giving [58, 65]. Here [51, 61] keeps its final result but stays up to date as a source.
    const run = drive(spec(10, 5), records(50, 58, 70, 59, 65), { flushAt: Number.POSITIVE_INFINITY });
    const at59 = run.steps[3]!.result;
    expect(at59).toMatchObject({ late: false, droppedFrom: 2 }); // [49, 59] and [51, 61] are closed
    expect(shape(at59.updated)).toEqual([[59, 69, [59]]]);
    expect(shape(run.steps[4]!.result.updated)).toEqual([
      [55, 65, [58, 59, 65]],
      [59, 69, [59, 65]],
      [60, 70, [65, 70]],
      [66, 76, [70]],
    ]);
    // Final results are what each window held when it closed; [49, 59] was born closed and is never emitted.
    expect(shape(run.closed)).toEqual([
      [40, 50, [50]],
      [48, 58, [50, 58]],
      [51, 61, [58]],
      [55, 65, [58, 59, 65]],
      [59, 69, [59, 65]],
      [60, 70, [65, 70]],
      [66, 76, [70]],
    ]);
  });

  it('hand out each final result once, keep closed windows for 2·d, then drop them', () => {
    const s = spec(10);
    const state = addRecord(s, undefined, 100, 100, 100).state;
    const first = closeWindows(s, state, 101);
    expect(shape(first.closed)).toEqual([[90, 100, [100]]]);
    expect(first.state!.windows).toEqual([{ start: 90, end: 100, acc: [100], latest: 100, closed: true }]);
    expect(nextCloseTime(s, first.state)).toBe(121);
    const again = closeWindows(s, first.state, 120);
    expect(again.closed).toEqual([]);
    expect(again.state).toBe(first.state);
    expect(closeWindows(s, first.state, 121)).toEqual({ state: undefined, closed: [] });
  });

  it('match a brute-force model on random streams, in and out of order, with and without grace', () => {
    const next = random(42);
    for (let run = 0; run < 400; run += 1) {
      const d = [1, 3, 10][Math.floor(next() * 3)]!;
      const grace = [0, 2, 7, 1_000][Math.floor(next() * 4)]!;
      let clock = 50;
      const times = Array.from({ length: 1 + Math.floor(next() * 30) }, () => {
        clock += Math.floor(next() * 6);
        return Math.max(0, clock - (next() < 0.3 ? Math.floor(next() * 25) : 0));
      });
      checkAgainstModel(spec(d, grace), d, grace, times);
    }
  });
});

/**
 * The model: the windows Kafka Streams defines over the records taken so far (a left window per record, a right
 * window per record with a later record within d + 1), each holding exactly the records in it. A record is late
 * when stream time has reached t + d + 1 + grace. A window's final result is what it held when it closed; one
 * that was already closed when it came to exist is never emitted. Closed windows are dropped 2·d after closing.
 */
function checkAgainstModel(s: WindowedAggregation<number, number[]>, d: number, grace: number, times: number[]): void {
  const closeTime = (start: number): number => start + d + 1 + grace;
  const taken: number[] = [];
  const model = (): Map<number, number[]> => {
    const starts = new Set<number>();
    for (const r of taken) {
      starts.add(r - d);
      if (taken.some((q) => q > r && q <= r + 1 + d)) starts.add(r + 1);
    }
    return new Map(
      [...starts]
        .sort((a, b) => a - b)
        .map((start) => [start, taken.filter((r) => r >= start && r <= start + d).sort((a, b) => a - b)]),
    );
  };
  const emitted = new Set<number>();
  const expectedClosed: Array<[number, number, number[]]> = [];

  let state: KeyWindowState<number[]> | undefined;
  let streamTime = 0;
  for (const t of times) {
    streamTime = Math.max(streamTime, t);
    const before = model();
    const late = streamTime >= t + d + 1 + grace;
    const result = addRecord(s, state, t, t, streamTime);
    expect(result.late, `record ${t} at stream time ${streamTime}`).toBe(late);
    if (!late) taken.push(t);
    const after = model();
    for (const start of after.keys()) {
      if (!before.has(start) && closeTime(start) <= streamTime) emitted.add(start); // born closed: never emitted
    }
    // Open windows changed by this record are reported with their new contents.
    const changed = [...after].filter(
      ([start, held]) => closeTime(start) > streamTime && JSON.stringify(before.get(start)) !== JSON.stringify(held),
    );
    expect(shape(result.updated)).toEqual(changed.map(([start, held]) => [start, start + d, held]));

    const closing = closeWindows(s, roundTrip(result.state), streamTime);
    for (const [start, held] of after) {
      if (!emitted.has(start) && closeTime(start) <= streamTime) {
        emitted.add(start);
        expectedClosed.push([start, start + d, before.get(start) ?? held]);
      }
    }
    expect(shape(closing.closed)).toEqual(expectedClosed.splice(0));
    state = roundTrip(closing.state);

    // Every window kept is exact, and exactly the windows not yet past their retention are kept.
    const kept = (state?.windows ?? []).map((w) => [w.start, w.acc] as const);
    expect(kept).toEqual([...after].filter(([start]) => closeTime(start) + 2 * d > streamTime));
  }
  const flushed = closeWindows(s, state, Number.POSITIVE_INFINITY);
  const final = model();
  expect(shape(flushed.closed)).toEqual(
    [...final].filter(([start]) => !emitted.has(start)).map(([start, held]) => [start, start + d, held]),
  );
  expect(flushed.state).toBeUndefined();
}
