import { describe, expect, it } from 'vitest';
import { AgentStreamsError, ErrorCode } from '../../runtime/errors.ts';
import { backoffMs, retry, withRetry, type Sleep } from '../../runtime/retry.ts';

function transient(message = 'transient'): AgentStreamsError {
  return new AgentStreamsError(ErrorCode.REGISTRY_UNAVAILABLE, message, { retriable: true });
}

/** Records requested delays and returns at once, so no test waits on a clock. */
function recordingSleep(): { sleep: Sleep; delays: number[] } {
  const delays: number[] = [];
  return {
    delays,
    sleep: async (ms) => {
      delays.push(ms);
    },
  };
}

function failing(errors: unknown[], result = 'ok'): { fn: (attempt: number) => Promise<string>; attempts: number[] } {
  const attempts: number[] = [];
  return {
    attempts,
    fn: async (attempt) => {
      attempts.push(attempt);
      const error = errors[attempts.length - 1];
      if (error !== undefined) throw error;
      return result;
    },
  };
}

describe('retry policy', () => {
  it('fills defaults and is frozen', () => {
    const policy = retry();
    expect(policy).toEqual({ initialMs: 100, maxMs: 10_000, factor: 2, jitter: 0.2, maxAttempts: Infinity });
    expect(Object.isFrozen(policy)).toBe(true);
  });

  it('refuses invalid options and names each problem', () => {
    try {
      retry({ initialMs: -1, factor: 0.5, jitter: 2, maxAttempts: 0 });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(AgentStreamsError);
      const e = error as AgentStreamsError;
      expect(e.code).toBe(ErrorCode.RETRY_POLICY_INVALID);
      expect(e.details.problems).toHaveLength(4);
    }
    expect(() => retry({ initialMs: 500, maxMs: 100 })).toThrow(/maxMs/);
    expect(() => retry({ maxAttempts: 1.5 })).toThrow(/maxAttempts/);
  });
});

describe('backoffMs', () => {
  it('grows exponentially and stops at maxMs', () => {
    const policy = retry({ initialMs: 100, maxMs: 1_000, factor: 2, jitter: 0 });
    expect([1, 2, 3, 4, 5, 6, 50].map((attempt) => backoffMs(policy, attempt))).toEqual([
      100, 200, 400, 800, 1_000, 1_000, 1_000,
    ]);
  });

  it('keeps jitter within ±jitter of the base and never above maxMs', () => {
    const policy = retry({ initialMs: 1_000, maxMs: 10_000, factor: 3, jitter: 0.2 });
    expect(backoffMs(policy, 1, () => 0)).toBe(800);
    expect(backoffMs(policy, 1, () => 0.5)).toBe(1_000);
    expect(backoffMs(policy, 1, () => 0.999999)).toBe(1_200);
    for (let i = 0; i < 200; i += 1) {
      const delay = backoffMs(policy, 2);
      expect(delay).toBeGreaterThanOrEqual(2_400);
      expect(delay).toBeLessThanOrEqual(3_600);
    }
    expect(backoffMs(policy, 10, () => 1)).toBe(10_000);
    expect(backoffMs(policy, 10, () => 0)).toBe(8_000);
  });

  it('refuses attempt numbers below 1', () => {
    expect(() => backoffMs(retry(), 0)).toThrow(/attempt/);
  });
});

describe('withRetry', () => {
  const policy = retry({ initialMs: 10, maxMs: 1_000, factor: 2, jitter: 0 });

  it('retries retriable errors and reports each retry', async () => {
    const { sleep, delays } = recordingSleep();
    const { fn, attempts } = failing([transient(), transient()]);
    const retries: Array<[number, number]> = [];
    const result = await withRetry(fn, policy, {
      sleep,
      onRetry: (_error, attempt, delayMs) => retries.push([attempt, delayMs]),
    });
    expect(result).toBe('ok');
    expect(attempts).toEqual([1, 2, 3]);
    expect(retries).toEqual([
      [1, 10],
      [2, 20],
    ]);
    expect(delays).toEqual([10, 20]);
  });

  it('throws non-retriable errors at once', async () => {
    const { sleep, delays } = recordingSleep();
    const fatal = new AgentStreamsError(ErrorCode.SCHEMA_INCOMPATIBLE, 'fatal');
    const { fn, attempts } = failing([fatal]);
    await expect(withRetry(fn, policy, { sleep })).rejects.toBe(fatal);
    expect(attempts).toEqual([1]);
    expect(delays).toEqual([]);

    const plain = failing([new Error('plain')]);
    await expect(withRetry(plain.fn, policy, { sleep })).rejects.toThrow('plain');
    expect(plain.attempts).toEqual([1]);
  });

  it('lets a custom isRetriable decide', async () => {
    const { sleep } = recordingSleep();
    const { fn, attempts } = failing([new Error('ECONNRESET')]);
    await expect(
      withRetry(fn, policy, { sleep, isRetriable: (e) => e instanceof Error && e.message === 'ECONNRESET' }),
    ).resolves.toBe('ok');
    expect(attempts).toEqual([1, 2]);
  });

  it('waits at least retryAfterMs, and treats it as retriable', async () => {
    const { sleep, delays } = recordingSleep();
    const backpressure = Object.assign(new Error('sink busy'), { retryAfterMs: 5_000 });
    const small = Object.assign(new Error('sink busy'), { retryAfterMs: 1 });
    const { fn } = failing([backpressure, small]);
    await withRetry(fn, policy, { sleep });
    expect(delays).toEqual([5_000, 20]);
  });

  it('throws the last error with its cause chain when attempts run out', async () => {
    const { sleep, delays } = recordingSleep();
    const root = new Error('socket hang up');
    const errors = [
      transient('first'),
      transient('second'),
      new AgentStreamsError(ErrorCode.REGISTRY_UNAVAILABLE, 'third', { retriable: true, cause: root }),
    ];
    const { fn, attempts } = failing([...errors, transient('never reached')]);
    const error = await withRetry(fn, retry({ initialMs: 10, jitter: 0, maxAttempts: 3 }), { sleep }).catch(
      (e: unknown) => e,
    );
    expect(error).toBe(errors[2]);
    expect((error as Error).cause).toBe(root);
    expect(attempts).toEqual([1, 2, 3]);
    expect(delays).toHaveLength(2);
  });

  it('stops with the last error when aborted during a wait', async () => {
    const controller = new AbortController();
    const sleep: Sleep = async () => controller.abort(new Error('shutting down'));
    const last = transient('last');
    const { fn, attempts } = failing([last, transient()]);
    await expect(withRetry(fn, policy, { sleep, signal: controller.signal })).rejects.toBe(last);
    expect(attempts).toEqual([1]);
  });

  it('does not retry an error raised after abort, and refuses to start when already aborted', async () => {
    const controller = new AbortController();
    const { sleep, delays } = recordingSleep();
    const error = transient();
    const fn = async (): Promise<string> => {
      controller.abort();
      throw error;
    };
    await expect(withRetry(fn, policy, { sleep, signal: controller.signal })).rejects.toBe(error);
    expect(delays).toEqual([]);

    const never = failing([]);
    const aborted = await withRetry(never.fn, policy, { signal: controller.signal }).catch((e: unknown) => e);
    expect(aborted).toBeInstanceOf(AgentStreamsError);
    expect((aborted as AgentStreamsError).code).toBe(ErrorCode.ABORTED);
    expect(never.attempts).toEqual([]);
  });

  it('default sleep resolves early on abort', async () => {
    const controller = new AbortController();
    const { fn, attempts } = failing([transient('slow'), transient()]);
    const pending = withRetry(fn, retry({ initialMs: 60_000, maxMs: 60_000, jitter: 0 }), {
      signal: controller.signal,
      onRetry: () => queueMicrotask(() => controller.abort()),
    });
    await expect(pending).rejects.toThrow('slow');
    expect(attempts).toEqual([1]);
  });
});
