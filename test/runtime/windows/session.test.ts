import { describe, expect, it, vi } from 'vitest';
import { AgentStreamsError, ErrorCode } from '../../../runtime/errors.ts';
import {
  addRecord,
  closeWindows,
  nextCloseTime,
  session,
  type WindowedAggregation,
} from '../../../runtime/windows/index.ts';
import { deepFreeze, drive, random, roundTrip, shuffle } from './drive.ts';

interface Seen {
  values: string[];
}

function spec(gap: number, grace = 0): WindowedAggregation<string, Seen> {
  return {
    window: session({ gap, grace }),
    init: () => ({ values: [] }),
    add: (acc, value) => ({ values: [...acc.values, value] }),
    merge: (a, b) => ({ values: [...a.values, ...b.values] }),
  };
}

describe('session windows', () => {
  it('grow a session with each record at most gap after it, and start a new one beyond', () => {
    const run = drive(
      spec(10),
      [
        [0, 'a'],
        [5, 'b'],
        [15, 'c'],
        [26, 'd'],
      ],
      { closeAsStreamTimeAdvances: false },
    );
    expect(run.steps.map((s) => s.result.updated)).toEqual([
      [{ start: 0, end: 0, value: { values: ['a'] } }],
      [{ start: 0, end: 5, value: { values: ['a', 'b'] } }],
      [{ start: 0, end: 15, value: { values: ['a', 'b', 'c'] } }], // exactly gap after 5: same session
      [{ start: 26, end: 26, value: { values: ['d'] } }], // 11 after 15: a new session
    ]);
    expect(run.steps[1]!.result.removed).toEqual([{ start: 0, end: 0 }]);
    expect(run.state!.windows.map((w) => [w.start, w.end, w.latest])).toEqual([
      [0, 15, 15],
      [26, 26, 26],
    ]);
  });

  it('merge two sessions that a record bridges, with merge, in start order', () => {
    const s = spec(10, 100);
    const merge = vi.fn(s.merge!);
    const withSpy = { ...s, merge };
    const run = drive(
      withSpy,
      [
        [0, 'a'],
        [5, 'b'],
        [16, 'c'],
        [20, 'd'],
      ],
      { closeAsStreamTimeAdvances: false },
    );
    expect(run.state!.windows.map((w) => [w.start, w.end])).toEqual([
      [0, 5],
      [16, 20],
    ]);
    expect(merge).not.toHaveBeenCalled(); // records inside or next to one session merge nothing

    const bridged = addRecord(withSpy, run.state, 'x', 10, 20); // 5 after the first session, 6 before the second
    expect(merge).toHaveBeenCalledTimes(1);
    expect(merge).toHaveBeenCalledWith({ values: ['a', 'b'] }, { values: ['c', 'd'] });
    expect(bridged).toEqual({
      state: { windows: [{ start: 0, end: 20, acc: { values: ['a', 'b', 'c', 'd', 'x'] }, latest: 20 }] },
      updated: [{ start: 0, end: 20, value: { values: ['a', 'b', 'c', 'd', 'x'] } }],
      amended: [],
      late: false,
      droppedFrom: 0,
      removed: [
        { start: 0, end: 5 },
        { start: 16, end: 20 },
      ],
    });
  });

  it('close at last record + 1 + gap + grace; until then a record within gap still extends the session', () => {
    const s = spec(10, 2); // [0, 5] closes at 5 + 1 + 10 + 2 = 18
    const state = deepFreeze(roundTrip(addRecord(s, undefined, 'a', 5, 5).state));
    expect(nextCloseTime(s, state)).toBe(18);
    expect(addRecord(s, state, 'b', 15, 17).updated).toEqual([{ start: 5, end: 15, value: { values: ['a', 'b'] } }]);
    expect(closeWindows(s, state, 17).closed).toEqual([]);
    expect(closeWindows(s, state, 18)).toEqual({
      state: undefined,
      closed: [{ start: 5, end: 5, value: { values: ['a'] } }],
    });
  });

  it('never merge a closed session: a record within gap of it starts a new one', () => {
    const s = spec(10, 2);
    const state = addRecord(s, undefined, 'a', 5, 5).state;
    const after = addRecord(s, state, 'b', 15, 18); // [5, 5] closed at 18, though not yet removed
    expect(after.updated).toEqual([{ start: 15, end: 15, value: { values: ['b'] } }]);
    expect(after.removed).toEqual([]);
    expect(closeWindows(s, after.state, 18).closed).toEqual([{ start: 5, end: 5, value: { values: ['a'] } }]);
  });

  it('drop a record as late when no open session takes it and its own session would already be closed', () => {
    const s = spec(10, 5);
    const state = deepFreeze(roundTrip(addRecord(s, undefined, 'a', 100, 100).state));
    // Alone, a record at 84 closes at 84 + 1 + 10 + 5 = 100.
    expect(addRecord(s, state, 'b', 84, 100)).toEqual({
      state,
      updated: [],
      amended: [],
      late: true,
      droppedFrom: 1,
      removed: [],
    });
    expect(addRecord(s, state, 'c', 85, 100)).toMatchObject({ late: false, updated: [{ start: 85, end: 85 }] });
    // A record far behind stream time is still on time if it joins an open session.
    expect(addRecord(s, state, 'd', 90, 100)).toMatchObject({ late: false, updated: [{ start: 90, end: 100 }] });
  });

  it('bridge sessions with an out-of-order record within grace', () => {
    const run = drive(spec(15, 50), [
      [0, 'a'],
      [30, 'b'],
      [15, 'c'],
    ]);
    expect(run.late).toEqual([]);
    expect(run.state!.windows.map((w) => [w.start, w.end, w.acc.values])).toEqual([[0, 30, ['a', 'b', 'c']]]);
    // With no grace the first session has closed (at 0 + 1 + 15) by then: the record only joins the second.
    const strict = drive(
      spec(15, 0),
      [
        [0, 'a'],
        [30, 'b'],
        [15, 'c'],
      ],
      { flushAt: Number.POSITIVE_INFINITY },
    );
    expect(strict.closed.map((w) => [w.start, w.end, w.value.values])).toEqual([
      [0, 0, ['a']],
      [15, 30, ['b', 'c']],
    ]);
  });

  it('refuse to run without merge', () => {
    const { merge: _merge, ...noMerge } = spec(10);
    let error: unknown;
    try {
      addRecord(noMerge, undefined, 'a', 1, 1);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(AgentStreamsError);
    expect((error as AgentStreamsError).code).toBe(ErrorCode.WINDOW_INVALID);
  });

  it('find the same sessions for a shuffled stream within grace as gap clustering of the sorted stream', () => {
    const next = random(7);
    for (let run = 0; run < 200; run += 1) {
      const gap = 1 + Math.floor(next() * 15);
      const times = Array.from({ length: 1 + Math.floor(next() * 30) }, () => Math.floor(next() * 300));
      const shuffled = shuffle(times, next);
      const s = spec(gap, 1_000);
      const result = drive(
        s,
        shuffled.map((t) => [t, String(t)] as const),
        { flushAt: Number.POSITIVE_INFINITY },
      );

      const sorted = [...times].sort((a, b) => a - b);
      const sessions: Array<{ start: number; end: number; values: string[] }> = [];
      for (const t of sorted) {
        const last = sessions.at(-1);
        if (last && t - last.end <= gap) {
          last.end = t;
          last.values.push(String(t));
        } else sessions.push({ start: t, end: t, values: [String(t)] });
      }
      expect(result.late).toEqual([]);
      expect(
        result.closed.map((w) => ({
          start: w.start,
          end: w.end,
          values: [...w.value.values].sort((a, b) => Number(a) - Number(b)),
        })),
      ).toEqual(sessions);
    }
  });
});
