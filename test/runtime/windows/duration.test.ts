import { describe, expect, it } from 'vitest';
import { AgentStreamsError, ErrorCode } from '../../../runtime/errors.ts';
import { duration, parseDuration } from '../../../runtime/windows/index.ts';

function durationError(value: unknown, name?: string): AgentStreamsError {
  try {
    duration(value as number, name);
  } catch (error) {
    if (error instanceof AgentStreamsError) return error;
    throw error;
  }
  throw new Error(`expected duration(${JSON.stringify(value)}) to fail`);
}

describe('duration', () => {
  it('reads every unit into whole milliseconds', () => {
    expect(duration('500ms')).toBe(500);
    expect(duration('5s')).toBe(5_000);
    expect(duration('1m')).toBe(60_000);
    expect(duration('1h')).toBe(3_600_000);
    expect(duration('1d')).toBe(86_400_000);
    expect(duration('0s')).toBe(0);
    expect(duration(' 10 s ')).toBe(10_000);
  });

  it('takes numbers as milliseconds, and fractions when they come to whole milliseconds', () => {
    expect(duration(0)).toBe(0);
    expect(duration(1_234)).toBe(1_234);
    expect(duration('1.5m')).toBe(90_000);
    expect(duration('1.1s')).toBe(1_100); // 1.1 × 1000 is 1100.0000000000002 in floating point
    expect(duration('0.25s')).toBe(250);
  });

  it.each([
    ['5', 'a string needs a unit'],
    ['5 seconds', 'is not a duration'],
    ['5S', 'is not a duration'],
    ['-5s', 'is not a duration'],
    ['', 'is not a duration'],
    ['1.5ms', 'not a whole number of milliseconds'],
    [-1, 'not a whole number of milliseconds >= 0'],
    [1.5, 'not a whole number of milliseconds >= 0'],
    [Number.NaN, 'not a whole number'],
    [Number.POSITIVE_INFINITY, 'not a whole number'],
    [null, 'is not a duration'],
    [{ ms: 5 }, 'is not a duration'],
    ['99999999999999999d', 'too large'],
  ])('refuses %j, naming the value', (value, reason) => {
    const error = durationError(value);
    expect(error.code).toBe(ErrorCode.DURATION_INVALID);
    expect(error.message).toContain(reason);
    expect(error.message).toContain(typeof value === 'number' ? String(value) : JSON.stringify(value));
    expect(error.details.value).toEqual(value);
  });

  it('says what the duration was for and what it expects', () => {
    const error = durationError('ten seconds', 'session gap');
    expect(error.message).toMatch(
      /^Invalid duration for session gap: "ten seconds" is not a duration; expected .*'5s'/,
    );
  });

  it('parses without throwing for callers that collect problems', () => {
    expect(parseDuration('2s')).toEqual({ ok: true, ms: 2_000 });
    expect(parseDuration('2x')).toMatchObject({ ok: false });
  });
});
