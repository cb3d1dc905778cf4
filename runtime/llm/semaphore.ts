/**
 * A small counting semaphore: at most `limit` LLM requests in flight per process, so a burst of requests queues
 * here instead of tripping the API's rate limits. Waiters are served first come, first served.
 */
import { AgentStreamsError, ErrorCode } from '../errors.ts';

export type Release = () => void;

export interface Semaphore {
  acquire(signal?: AbortSignal): Promise<Release>;
  readonly active: number;
  readonly waiting: number;
}

export function createSemaphore(limit: number): Semaphore {
  if (!(Number.isInteger(limit) && limit >= 1)) {
    throw new AgentStreamsError(
      ErrorCode.LLM_OPTIONS_INVALID,
      `LLM concurrency must be a whole number >= 1, got ${limit}.`,
    );
  }
  let active = 0;
  const waiters: Array<() => void> = [];

  const release = (): Release => {
    let released = false;
    // Idempotent, so a `finally` that runs twice cannot free a slot that someone else holds.
    return () => {
      if (released) return;
      released = true;
      const next = waiters.shift();
      if (next) next();
      else active -= 1;
    };
  };

  return {
    get active() {
      return active;
    },
    get waiting() {
      return waiters.length;
    },
    acquire(signal) {
      if (signal?.aborted)
        return Promise.reject(
          new AgentStreamsError(ErrorCode.ABORTED, 'Aborted while waiting for an LLM request slot.', {
            cause: signal.reason,
          }),
        );
      if (active < limit) {
        active += 1;
        return Promise.resolve(release());
      }
      return new Promise<Release>((resolve, reject) => {
        // The slot is handed over directly (active stays the same), so no newcomer can jump the queue.
        const grant = (): void => {
          signal?.removeEventListener('abort', onAbort);
          resolve(release());
        };
        const onAbort = (): void => {
          const index = waiters.indexOf(grant);
          if (index >= 0) waiters.splice(index, 1);
          reject(
            new AgentStreamsError(ErrorCode.ABORTED, 'Aborted while waiting for an LLM request slot.', {
              cause: signal?.reason,
            }),
          );
        };
        waiters.push(grant);
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    },
  };
}
