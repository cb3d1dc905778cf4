/** `produce` sends one transaction in request-sized groups (no service needed): order kept, no group over the bound. */
import { describe, expect, it } from 'vitest';
import { chunks } from '../../cli/commands/produce.ts';

describe('produce chunks', () => {
  it('keeps order, bounds each request by bytes and count, never drops or splits a message', () => {
    const messages = Array.from({ length: 2500 }, (_, i) => ({
      key: `k${i}`,
      value: Buffer.alloc(i % 7 === 0 ? 100_000 : 100),
      i,
    }));
    const groups = [...chunks(messages)];
    expect(groups.flat().map((m) => m.i)).toEqual(messages.map((m) => m.i));
    for (const g of groups) {
      expect(g.length).toBeLessThanOrEqual(1000);
      const bytes = g.reduce((n, m) => n + m.value.length, 0);
      expect(g.length === 1 || bytes <= 512 * 1024).toBe(true);
    }
    expect(groups.length).toBeGreaterThan(3);
    // A message bigger than the bound still goes, alone.
    expect([...chunks([{ key: null, value: Buffer.alloc(600 * 1024) }])]).toHaveLength(1);
    expect([...chunks([])]).toEqual([]);
  });
});
