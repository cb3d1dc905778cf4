import { describe, expect, it } from 'vitest';
import { AgentStreamsError, ErrorCode } from '../../../runtime/errors.ts';
import {
  hopping,
  session,
  sliding,
  tumbling,
  windowCloseTime,
  windowedAggregation,
  type WindowedAggregation,
} from '../../../runtime/windows/index.ts';

function windowError(make: () => unknown): AgentStreamsError {
  try {
    make();
  } catch (error) {
    if (error instanceof AgentStreamsError) return error;
    throw error;
  }
  throw new Error('expected the window constructor to fail');
}

describe('window values', () => {
  it('are frozen plain objects in milliseconds, with grace defaulting to 0', () => {
    const t = tumbling({ size: '1m' });
    expect(t).toEqual({ kind: 'tumbling', sizeMs: 60_000, graceMs: 0, amendWithinMs: 0 });
    expect(Object.isFrozen(t)).toBe(true);
    expect(Object.getPrototypeOf(t)).toBe(Object.prototype);
    expect(JSON.parse(JSON.stringify(t))).toEqual(t);

    expect(hopping({ size: '5m', advance: '1m', grace: '10s' })).toEqual({
      kind: 'hopping',
      sizeMs: 300_000,
      advanceMs: 60_000,
      graceMs: 10_000,
      amendWithinMs: 0,
    });
    expect(sliding({ timeDifference: 30_000, grace: 500 })).toEqual({
      kind: 'sliding',
      timeDifferenceMs: 30_000,
      graceMs: 500,
    });
    expect(session({ gap: '5m' })).toEqual({ kind: 'session', gapMs: 300_000, graceMs: 0 });
    expect(Object.isFrozen(session({ gap: 1 }))).toBe(true);
  });

  it('allow advance equal to size (tumbling as hopping)', () => {
    expect(hopping({ size: 10, advance: 10 }).advanceMs).toBe(10);
  });

  it('refuse non-positive sizes, gaps and time differences', () => {
    for (const make of [
      () => tumbling({ size: 0 }),
      () => sliding({ timeDifference: '0s' }),
      () => session({ gap: 0 }),
      () => hopping({ size: 10, advance: 0 }),
    ]) {
      const error = windowError(make);
      expect(error.code).toBe(ErrorCode.WINDOW_INVALID);
      expect(error.message).toContain('must be greater than 0');
    }
  });

  it('refuse an advance larger than the size', () => {
    const error = windowError(() => hopping({ size: '1m', advance: '2m' }));
    expect(error.code).toBe(ErrorCode.WINDOW_INVALID);
    expect(error.message).toBe(
      'Invalid hopping windows: advance (120000 ms) must not exceed size (60000 ms), or records would fall between windows. Fix the options passed to hopping().',
    );
  });

  it('name every bad option, missing option and unknown option at once', () => {
    const error = windowError(() => hopping({ size: 'big', grace: -1, grase: '5s' } as never));
    expect(error.message).toContain('Invalid hopping windows:');
    expect(error.message).toContain('unknown option "grase"');
    expect(error.message).toContain('size: "big" is not a duration');
    expect(error.message).toContain('advance is required');
    expect(error.message).toContain('grace: -1 is not a whole number of milliseconds >= 0');
    expect(error.details.problems).toHaveLength(4);
    expect(windowError(() => tumbling(undefined as never)).message).toContain('options must be an object');
  });

  it('close by Kafka Streams’ rule, per kind of end', () => {
    // Exclusive end: [0, 10) with grace 5 closes when stream time reaches 15.
    expect(windowCloseTime(tumbling({ size: 10, grace: 5 }), 10)).toBe(15);
    expect(windowCloseTime(hopping({ size: 10, advance: 5, grace: 5 }), 10)).toBe(15);
    // Inclusive end: [0, 10] with grace 5 still takes records at stream time 15.
    expect(windowCloseTime(sliding({ timeDifference: 10, grace: 5 }), 10)).toBe(16);
    // A session ending at 10 can still be extended by a record at 10 + gap.
    expect(windowCloseTime(session({ gap: 3, grace: 5 }), 10)).toBe(19);
  });
});

describe('windowedAggregation', () => {
  const count = { init: () => 0, add: (acc: number) => acc + 1 };

  it('accepts a valid spec and freezes it', () => {
    const spec = windowedAggregation({ window: tumbling({ size: 10 }), ...count });
    expect(Object.isFrozen(spec)).toBe(true);
    expect(spec.init()).toBe(0);
  });

  it('requires merge for session windows', () => {
    const error = windowError(() => windowedAggregation({ window: session({ gap: 10 }), ...count }));
    expect(error.code).toBe(ErrorCode.WINDOW_INVALID);
    expect(error.message).toContain('session windows need merge(a, b)');
    expect(() =>
      windowedAggregation({ window: session({ gap: 10 }), ...count, merge: (a: number, b: number) => a + b }),
    ).not.toThrow();
  });

  it('refuses windows not made by the constructors and missing functions', () => {
    const error = windowError(() =>
      windowedAggregation({ window: { kind: 'weekly', sizeMs: 7 }, init: 5 } as unknown as WindowedAggregation<
        unknown,
        number
      >),
    );
    expect(error.message).toContain('window kind "weekly" is not one of tumbling, hopping, sliding, session');
    expect(error.message).toContain('init must be a function');
    expect(error.message).toContain('add must be a function');
    const bad = windowError(() =>
      windowedAggregation({ window: { kind: 'hopping', sizeMs: 5, advanceMs: 10, graceMs: 0 }, ...count }),
    );
    expect(bad.message).toContain('advanceMs must not exceed sizeMs');
  });
});
