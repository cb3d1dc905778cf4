import { describe, expect, it } from 'vitest';
import { createSemaphore } from '../../../runtime/llm/index.ts';

describe('semaphore', () => {
  it('admits `limit` holders, queues the rest first come first served, and releases idempotently', async () => {
    const semaphore = createSemaphore(2);
    const a = await semaphore.acquire();
    await semaphore.acquire();
    const order: string[] = [];
    const c = semaphore.acquire().then((release) => (order.push('c'), release));
    const d = semaphore.acquire().then((release) => (order.push('d'), release));
    expect([semaphore.active, semaphore.waiting]).toEqual([2, 2]);
    a();
    a();
    await c;
    expect(order).toEqual(['c']);
    expect([semaphore.active, semaphore.waiting]).toEqual([2, 1]);
    (await c)();
    await d;
    expect(order).toEqual(['c', 'd']);
  });

  it('drops a waiter whose signal aborts', async () => {
    const semaphore = createSemaphore(1);
    const release = await semaphore.acquire();
    const controller = new AbortController();
    const waiting = semaphore.acquire(controller.signal);
    controller.abort();
    await expect(waiting).rejects.toMatchObject({ code: 'AS_ABORTED' });
    expect(semaphore.waiting).toBe(0);
    release();
    expect(semaphore.active).toBe(0);
  });
});
