import { describe, expect, it } from 'vitest';
import { AgentStreamsError, ErrorCode } from '../../../runtime/errors.ts';
import {
  addRecord,
  closeWindows,
  hopping,
  nextCloseTime,
  timeWindowStarts,
  tumbling,
  type KeyWindowState,
  type WindowedAggregation,
} from '../../../runtime/windows/index.ts';
import { deepFreeze, drive, random, roundTrip } from './drive.ts';

const counting = (window: WindowedAggregation<unknown, number>['window']): WindowedAggregation<string, number> => ({
  window,
  init: () => 0,
  add: (acc) => acc + 1,
});

/** Collects the values themselves, to see exactly which records each window took. */
const collecting = (
  window: WindowedAggregation<unknown, string[]>['window'],
): WindowedAggregation<string, string[]> => ({
  window,
  init: () => [],
  add: (acc, value) => [...acc, value],
});

describe('tumbling windows', () => {
  const spec = collecting(tumbling({ size: 10, grace: 5 }));

  it('put each record in [k·size, (k+1)·size): a record exactly at a window end opens the next window', () => {
    const run = drive(
      spec,
      [
        [0, 'a'],
        [9, 'b'],
        [10, 'c'],
        [19, 'd'],
      ],
      { closeAsStreamTimeAdvances: false },
    );
    expect(run.steps.map((s) => s.result.updated)).toEqual([
      [{ start: 0, end: 10, value: ['a'] }],
      [{ start: 0, end: 10, value: ['a', 'b'] }],
      [{ start: 10, end: 20, value: ['c'] }],
      [{ start: 10, end: 20, value: ['c', 'd'] }],
    ]);
    expect(run.state).toEqual({
      windows: [
        { start: 0, end: 10, acc: ['a', 'b'], latest: 9 },
        { start: 10, end: 20, acc: ['c', 'd'], latest: 19 },
      ],
    });
  });

  it('take an out-of-order record while stream time is below end + grace, and drop it from then on', () => {
    // [0, 10) closes at 10 + 5 = 15.
    let state = addRecord(spec, undefined, 'a', 2, 2).state;
    state = addRecord(spec, state, 'b', 14, 14).state;
    const inGrace = addRecord(spec, state, 'c', 3, 14);
    expect(inGrace).toMatchObject({ late: false, droppedFrom: 0, updated: [{ start: 0, end: 10, value: ['a', 'c'] }] });

    const frozen = deepFreeze(roundTrip(inGrace.state));
    const late = addRecord(spec, frozen, 'd', 3, 15);
    expect(late).toEqual({ state: frozen, updated: [], amended: [], late: true, droppedFrom: 1, removed: [] });
    expect(late.state).toBe(frozen); // unchanged: the same object, so the caller can skip the write
  });

  it('report a late record that meets no state without making any', () => {
    expect(addRecord(spec, undefined, 'x', 0, 100)).toEqual({
      state: undefined,
      updated: [],
      amended: [],
      late: true,
      droppedFrom: 1,
      removed: [],
    });
  });

  it('close windows at exactly end + grace, oldest first, and keep the rest', () => {
    const run = drive(
      spec,
      [
        [1, 'a'],
        [12, 'b'],
        [25, 'c'],
      ],
      { closeAsStreamTimeAdvances: false },
    );
    const state = deepFreeze(run.state!);
    expect(state.windows.map((w) => w.start)).toEqual([0, 10, 20]);
    expect(nextCloseTime(spec, state)).toBe(15);

    const none = closeWindows(spec, state, 14);
    expect(none.closed).toEqual([]);
    expect(none.state).toBe(state);

    const two = closeWindows(spec, state, 25);
    expect(two.closed).toEqual([
      { start: 0, end: 10, value: ['a'] },
      { start: 10, end: 20, value: ['b'] },
    ]);
    expect(two.state).toEqual({ windows: [{ start: 20, end: 30, acc: ['c'], latest: 25 }] });
    expect(nextCloseTime(spec, two.state)).toBe(35);

    const last = closeWindows(spec, two.state, 35);
    expect(last).toEqual({ state: undefined, closed: [{ start: 20, end: 30, value: ['c'] }] });
    expect(nextCloseTime(spec, last.state)).toBeUndefined();
    expect(closeWindows(spec, undefined, 1_000)).toEqual({ state: undefined, closed: [] });
  });

  it('never change a stored window that is already closed, even before closeWindows removed it', () => {
    let state = addRecord(spec, undefined, 'a', 1, 1).state;
    // Stream time jumps to 15: [0, 10) is closed but still stored, because closeWindows has not run yet.
    state = addRecord(spec, state, 'b', 15, 15).state;
    const result = addRecord(spec, state, 'c', 5, 15);
    expect(result.late).toBe(true);
    expect(closeWindows(spec, state, 15).closed).toEqual([{ start: 0, end: 10, value: ['a'] }]);
  });

  it('give the same final results for a shuffled stream within grace as for the sorted stream', () => {
    const next = random(20240601);
    for (let run = 0; run < 200; run += 1) {
      const size = 1 + Math.floor(next() * 20);
      const sorted = Array.from({ length: 1 + Math.floor(next() * 40) }, () => Math.floor(next() * 200)).sort(
        (a, b) => a - b,
      );
      // Local disorder: each record moves at most a few places.
      const shuffled = sorted
        .map((t, i) => [t, i + next() * 6] as const)
        .sort((a, b) => a[1] - b[1])
        .map(([t]) => t);
      let streamTime = 0;
      let lateness = 0;
      for (const t of shuffled) {
        streamTime = Math.max(streamTime, t);
        lateness = Math.max(lateness, streamTime - t);
      }
      const countSpec = counting(tumbling({ size, grace: lateness }));
      const inOrder = drive(
        countSpec,
        sorted.map((t) => [t, 'x'] as const),
        { flushAt: Number.POSITIVE_INFINITY },
      );
      const disordered = drive(
        countSpec,
        shuffled.map((t) => [t, 'x'] as const),
        { flushAt: Number.POSITIVE_INFINITY },
      );
      expect(disordered.late).toEqual([]);
      expect(disordered.closed).toEqual(inOrder.closed);
      // And both are right: one result per occupied window, counting its records.
      const expected = new Map<number, number>();
      for (const t of sorted) expected.set(t - (t % size), (expected.get(t - (t % size)) ?? 0) + 1);
      expect(inOrder.closed).toEqual(
        [...expected].sort((a, b) => a[0] - b[0]).map(([start, value]) => ({ start, end: start + size, value })),
      );
    }
  });

  it('are deterministic and leave their inputs alone', () => {
    const state = deepFreeze(
      roundTrip(
        drive(
          spec,
          [
            [3, 'a'],
            [13, 'b'],
          ],
          { closeAsStreamTimeAdvances: false },
        ).state!,
      ),
    );
    const once = addRecord(spec, state, 'c', 4, 13);
    const twice = addRecord(spec, state, 'c', 4, 13);
    expect(once).toEqual(twice);
    expect(state.windows[0]!.acc).toEqual(['a']);
    expect(roundTrip(once.state)).toEqual(once.state);
  });
});

describe('hopping windows', () => {
  it('put a record in every window [k·advance, k·advance + size) that holds it, never before 0', () => {
    const w = hopping({ size: 10, advance: 5 });
    expect(timeWindowStarts(w, 12)).toEqual([5, 10]);
    expect(timeWindowStarts(w, 10)).toEqual([5, 10]); // [0, 10) ends before 10
    expect(timeWindowStarts(w, 9)).toEqual([0, 5]);
    expect(timeWindowStarts(w, 3)).toEqual([0]);
    expect(timeWindowStarts(hopping({ size: 10, advance: 3 }), 10)).toEqual([3, 6, 9]);
    expect(timeWindowStarts(hopping({ size: 10, advance: 10 }), 10)).toEqual([10]);
    expect(timeWindowStarts(tumbling({ size: 10 }), 9)).toEqual([0]);
  });

  it('update all of a record’s windows, creating those that do not exist yet', () => {
    const spec = collecting(hopping({ size: 10, advance: 5, grace: 100 }));
    const run = drive(
      spec,
      [
        [7, 'a'],
        [12, 'b'],
      ],
      { closeAsStreamTimeAdvances: false },
    );
    expect(run.steps[1]!.result.updated).toEqual([
      { start: 5, end: 15, value: ['a', 'b'] },
      { start: 10, end: 20, value: ['b'] },
    ]);
    expect(run.state!.windows.map((w) => [w.start, w.acc])).toEqual([
      [0, ['a']],
      [5, ['a', 'b']],
      [10, ['b']],
    ]);
  });

  it('skip the closed windows of a record and update its open ones', () => {
    const spec = collecting(hopping({ size: 10, advance: 5 }));
    let state: KeyWindowState<string[]> | undefined = addRecord(spec, undefined, 'a', 14, 14).state;
    state = addRecord(spec, state, 'b', 15, 15).state; // [5, 15) closes at 15
    const partly = addRecord(spec, state, 'c', 12, 15);
    expect(partly).toMatchObject({
      late: false,
      droppedFrom: 1,
      updated: [{ start: 10, end: 20, value: ['a', 'b', 'c'] }],
    });
    expect(partly.state!.windows.find((w) => w.start === 5)!.acc).toEqual(['a']);

    const wholly = addRecord(spec, partly.state, 'd', 9, 15); // [0, 10) and [5, 15) are both closed
    expect(wholly).toMatchObject({ late: true, droppedFrom: 2, updated: [] });
    expect(wholly.state).toBe(partly.state);
  });

  it('close overlapping windows in start order and report the earliest close time', () => {
    const spec = counting(hopping({ size: 10, advance: 5, grace: 2 }));
    const run = drive(
      spec,
      [
        [3, 'a'],
        [8, 'b'],
        [11, 'c'],
      ],
      { closeAsStreamTimeAdvances: false },
    );
    expect(nextCloseTime(spec, run.state)).toBe(12);
    const closed = closeWindows(spec, run.state, 17);
    expect(closed.closed).toEqual([
      { start: 0, end: 10, value: 2 },
      { start: 5, end: 15, value: 2 },
    ]);
    expect(nextCloseTime(spec, closed.state)).toBe(22);
  });
});

describe('addRecord input checks', () => {
  const spec = counting(tumbling({ size: 10 }));

  it.each([
    [-1, 0, 'event time in whole milliseconds >= 0, got -1'],
    [1.5, 2, 'got 1.5'],
    [5, 4, 'Stream time 4 must be whole milliseconds and include the record'],
    [5, Number.NaN, 'Stream time NaN'],
  ])('refuses timestamp %s at stream time %s', (timestamp, streamTime, message) => {
    let error: unknown;
    try {
      addRecord(spec, undefined, 'x', timestamp, streamTime);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(AgentStreamsError);
    expect((error as AgentStreamsError).code).toBe(ErrorCode.WINDOW_INVALID);
    expect((error as AgentStreamsError).message).toContain(message);
  });
});

describe('closed windows kept for amendments (amendWithin)', () => {
  const spec = collecting(tumbling({ size: 10, grace: 5, amendWithin: 20 }));

  it('emit the closed window once, keep it until close time + amendWithin, and fold a late record into it as an amendment', () => {
    const open = addRecord(spec, undefined, 'a', 3, 3).state;
    // Closes at 10 + 5 = 15: the final result is out, the window stays (flagged closed) until 15 + 20 = 35.
    const closed = closeWindows(spec, open, 15);
    expect(closed.closed).toEqual([{ start: 0, end: 10, value: ['a'] }]);
    expect(closed.state).toEqual({ windows: [{ start: 0, end: 10, acc: ['a'], latest: 3, closed: true }] });
    expect(nextCloseTime(spec, closed.state)).toBe(35);
    // Closing again emits nothing more.
    expect(closeWindows(spec, closed.state, 20).closed).toEqual([]);

    const late = addRecord(spec, closed.state, 'b', 7, 30);
    expect(late).toMatchObject({
      late: false,
      updated: [],
      amended: [{ start: 0, end: 10, value: ['a', 'b'] }],
      droppedFrom: 0,
    });
    expect(late.state!.windows[0]).toMatchObject({ acc: ['a', 'b'], latest: 7, closed: true });

    // At 35 the window is gone: a record for it now is late, and its state goes.
    expect(closeWindows(spec, late.state, 35)).toEqual({ state: undefined, closed: [] });
    expect(addRecord(spec, undefined, 'c', 8, 35)).toMatchObject({ late: true, amended: [], droppedFrom: 1 });
  });

  it('a late record whose window was never stored is dropped rather than opening a closed window', () => {
    expect(addRecord(spec, undefined, 'x', 0, 20)).toMatchObject({
      late: true,
      amended: [],
      updated: [],
      droppedFrom: 1,
    });
  });

  it('without amendWithin, closed windows leave the state at once (late records are dropped, as before)', () => {
    const plain = collecting(tumbling({ size: 10, grace: 5 }));
    const closed = closeWindows(plain, addRecord(plain, undefined, 'a', 3, 3).state, 15);
    expect(closed).toEqual({ state: undefined, closed: [{ start: 0, end: 10, value: ['a'] }] });
  });

  it('amendWithin is checked like the other durations', () => {
    expect(() => tumbling({ size: 10, amendWithin: 'soon' as never })).toThrow(/amendWithin/);
  });
});
