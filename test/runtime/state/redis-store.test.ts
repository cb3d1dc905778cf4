import { afterAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { RedisTaskStore } from '../../../runtime/state/redis-store.ts';
import { config, uniqueName } from '../../support/stack.ts';

describe('RedisTaskStore', () => {
  const redis = new Redis(config.redis.url);
  afterAll(() => redis.disconnect());

  it('applies in one script, fenced by changelog offset, and refuses to apply on top of lost state', async () => {
    const store = new RedisTaskStore(redis, uniqueName('group'), 3, 60_000);
    expect(store.prefix).toMatch(/^as:\{.*:3\}$/);
    expect((await store.read(['counts:a'])).checkpoint).toBeUndefined();

    expect(await store.apply([{ key: 'counts:a', entry: { v: 1, c: 100 } }], 10, 50, '7', -1)).toBe('applied');
    // The same changes again (a replay, or a zombie's late apply): no effect.
    expect(await store.apply([{ key: 'counts:a', entry: { v: 99, c: null } }], 10, 50, '7', -1)).toBe('fenced');
    expect(
      await store.apply(
        [
          { key: 'counts:a', entry: { v: 2, c: 200 } },
          { key: 'counts:b', entry: { v: 5, c: null } },
        ],
        14,
        60,
        '9',
        10,
      ),
    ).toBe('applied');

    const read = await store.read(['counts:a', 'counts:b', 'counts:c'], 150);
    expect(read.checkpoint).toEqual({ changelog: 14, streamTime: 60, offset: '9' });
    expect(read.entries.get('counts:a')).toEqual({ v: 2, c: 200 });
    expect(read.entries.get('counts:b')).toEqual({ v: 5, c: null });
    expect(read.entries.has('counts:c')).toBe(false);

    // Due keys come with the read: nothing closes by 150, counts:a closes by 200.
    expect([...(await store.read([], 150)).entries.keys()]).toEqual([]);
    expect([...(await store.read([], 200)).entries.keys()]).toEqual(['counts:a']);

    // A delete removes the key and its close time.
    expect(await store.apply([{ key: 'counts:a', entry: null }], 15, 60, '10', 14)).toBe('applied');
    expect([...(await store.read(['counts:a'], 1000)).entries.keys()]).toEqual([]);

    // Redis behind what the task expects (it lost writes): refused, so the caller rebuilds from the changelog.
    expect(await store.apply([{ key: 'counts:b', entry: { v: 6, c: null } }], 20, 70, '11', 18)).toBe('lost');
    expect((await store.read(['counts:b'])).entries.get('counts:b')).toEqual({ v: 5, c: null });
  });

  it('expires the checkpoint and the due set with the state, and drops due entries whose state expired', async () => {
    const ttl = 1_500;
    const store = new RedisTaskStore(redis, uniqueName('ttl'), 0, ttl);
    const ckpt = `${store.prefix}:ckpt`;
    const due = `${store.prefix}:due`;
    const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

    expect(await store.apply([{ key: 'w:a', entry: { v: 1, c: 100 } }], 1, 10, '1', -1)).toBe('applied');
    // Every key of the task carries the state's TTL, not only the state.
    for (const key of [ckpt, due, `${store.prefix}:s:w:a`]) {
      const pttl = await redis.pttl(key);
      expect(pttl, key).toBeGreaterThan(0);
      expect(pttl, key).toBeLessThanOrEqual(ttl);
    }

    await sleep(750);
    // A later apply refreshes the checkpoint and the due set with its own state; w:a keeps its older expiry.
    expect(await store.apply([{ key: 'w:b', entry: { v: 2, c: 200 } }], 2, 20, '2', 1)).toBe('applied');
    expect(await redis.pttl(ckpt)).toBeGreaterThan(ttl - 500);
    expect(await redis.pttl(due)).toBeGreaterThan(ttl - 500);

    await sleep(1_000);
    // w:a has expired, w:b has not. The read that meets w:a's due entry drops it instead of keeping a dangling entry.
    expect(await redis.exists(`${store.prefix}:s:w:a`)).toBe(0);
    expect(await redis.zrange(due, '0', '-1')).toEqual(['w:a', 'w:b']);
    const read = await store.read([], 150);
    expect([...read.entries.keys()]).toEqual([]);
    expect(read.checkpoint).toEqual({ changelog: 2, streamTime: 20, offset: '2' });
    expect(await redis.zrange(due, '0', '-1')).toEqual(['w:b']);

    await sleep(800);
    // Past the last write's TTL nothing of the task is left: no checkpoint claiming state, no due entries.
    expect(await redis.exists(ckpt, due, `${store.prefix}:s:w:b`)).toBe(0);
    expect((await store.read([], 1_000)).checkpoint).toBeUndefined();
  });
});
