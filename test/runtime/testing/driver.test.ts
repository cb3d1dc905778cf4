import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TopologyTestDriver } from '../../../runtime/testing/driver.ts';
import { loadSchemas } from '../../../runtime/serde/schemas.ts';
import { defineTopology, processor, router } from '../../../runtime/topology/topology.ts';
import { deadLetterHeader } from '../../../runtime/engine/dead-letter.ts';
import { windowCountTopology } from '../../fixtures/topologies/window-count.ts';
import { hopping, session, sliding } from '../../../runtime/windows/index.ts';

const root = join(import.meta.dirname, '../../..');
const schemas = [...loadSchemas(join(root, 'schemas')), ...loadSchemas(join(root, 'test/fixtures/schemas'))];
const T0 = Date.UTC(2026, 0, 1);
const event = (key: string, second: number, amount = 1) => ({
  key,
  recordType: 'agentstreams.test.Event',
  value: { key, eventTime: T0 + second * 1000, amount },
});

describe('TopologyTestDriver', () => {
  it('counts per tumbling minute and emits each window once, when stream time passes its end plus grace', () => {
    const driver = new TopologyTestDriver(windowCountTopology('wc', 'in'), schemas);
    driver.pipe('in', event('a', 0, 5));
    driver.pipe('in', event('a', 30, 7));
    driver.pipe('in', event('a', 65, 1)); // next window; the first is still within grace
    expect(driver.readOutput('wc.counts')).toHaveLength(0);
    driver.pipe('in', event('a', 55, 2)); // out of order, within grace: still counted
    driver.pipe('in', event('a', 70, 1)); // stream time 70 s = end 60 s + grace 10 s: the first window closes
    const out = driver.readOutput<{ windowStart: number; count: number; sum: number; final: boolean }>('wc.counts');
    expect(out.map((o) => o.value)).toEqual([
      { key: 'a', windowStart: T0, windowEnd: T0 + 60_000, count: 3, sum: 14, final: true },
    ]);
    expect(driver.stateOf('counter', 'counts', 'a')).toMatchObject({ windows: [{ start: T0 + 60_000 }] });
  });

  it('sends records later than the grace period to the late-records topic and does not count them', () => {
    const driver = new TopologyTestDriver(windowCountTopology('wc', 'in'), schemas);
    driver.pipe('in', event('a', 0));
    driver.pipe('in', event('a', 200));
    driver.pipe('in', event('a', 10)); // its window closed at 70 s
    const late = driver.readOutput('wc.late-records');
    expect(late).toHaveLength(1);
    expect(late[0]!.headers['as.late.event-time']).toBe(String(T0 + 10_000));
    expect(driver.readOutput<{ count: number }>('wc.counts').map((o) => o.value.count)).toEqual([1]);
  });

  it('closes windows of idle keys by wall clock when asked to', () => {
    const driver = new TopologyTestDriver(
      windowCountTopology('wc', 'in', { wallClockCloseIntervalMs: 1000 }),
      schemas,
      { wallClock: T0 },
    );
    driver.pipe('in', event('idle', 5));
    driver.advanceWallClock(60_000);
    expect(driver.readOutput('wc.counts')).toHaveLength(0);
    driver.advanceWallClock(10_000);
    expect(driver.readOutput<{ key: string; count: number }>('wc.counts').map((o) => o.value)).toMatchObject([
      { key: 'idle', count: 1 },
    ]);
  });

  it('dead-letters a record whose event time is further ahead of the wall clock than records.maxEventTimeAheadMs, without advancing stream time', () => {
    const driver = new TopologyTestDriver(windowCountTopology('wc', 'in'), schemas, { wallClock: T0 });
    driver.pipe('in', event('a', 0, 5));
    driver.pipe('in', event('a', 86_400 + 1, 100)); // one day and a second ahead: refused with the default bound
    driver.pipe('in', {
      key: 'a',
      recordType: 'agentstreams.test.Event',
      value: { key: 'a', eventTime: Date.UTC(3000, 0, 1), amount: 100 },
    });
    driver.pipe('in', event('a', 30, 7)); // still in the first window: stream time did not move to the far future
    driver.pipe('in', event('a', 3600, 1)); // an hour ahead is fine, and closes the first window
    const dead = driver.readDeadLetters();
    expect(dead).toHaveLength(2);
    for (const d of dead) {
      expect(d.headers[deadLetterHeader.errorCode]).toBe('AS_RECORD_OUT_OF_RANGE');
      expect(d.headers[deadLetterHeader.errorReason]).toBe('event-time-ahead');
      expect(d.headers[deadLetterHeader.errorMessage]).toMatch(
        /ms ahead of the wall clock \(2026-01-01T00:00:00.000Z\), more than records.maxEventTimeAheadMs = 86400000/,
      );
    }
    expect(driver.readOutput<{ count: number; sum: number }>('wc.counts').map((o) => o.value)).toMatchObject([
      { count: 2, sum: 12 },
    ]);
    expect(driver.readOutput('wc.late-records')).toEqual([]);
    // The bound follows the driver's clock, and 0 turns it off.
    driver.advanceWallClock(2 * 86_400_000);
    driver.pipe('in', event('a', 86_400 + 1, 1));
    expect(driver.readDeadLetters()).toHaveLength(2);
    const unbounded = new TopologyTestDriver(windowCountTopology('wc', 'in'), schemas, {
      wallClock: T0,
      maxEventTimeAheadMs: 0,
    });
    unbounded.pipe('in', event('a', 10 * 86_400));
    expect(unbounded.readDeadLetters()).toEqual([]);
  });

  it('emits every update when asked to', () => {
    const driver = new TopologyTestDriver(windowCountTopology('wc', 'in', { emit: 'update' }), schemas);
    driver.pipe('in', event('a', 1));
    driver.pipe('in', event('a', 2));
    expect(
      driver.readOutput<{ count: number; final: boolean }>('wc.counts').map((o) => [o.value.count, o.value.final]),
    ).toEqual([
      [1, false],
      [2, false],
    ]);
  });

  it('dead-letters undecodable records and processor failures with their provenance, and goes on', () => {
    const topology = defineTopology({
      application: 'dl',
      topics: { in: { partitions: 3 }, out: { partitions: 3 } },
      processors: {
        picky: processor({
          inputs: ['in'],
          outputs: { out: ['agentstreams.test.Event'] },
          stores: ['seen'],
          process: (record, ctx) => {
            const value = record.value as { amount: number };
            if (value.amount < 0) throw new Error('negative amount');
            ctx.store<number>('seen').set((ctx.store<number>('seen').get() ?? 0) + 1);
            ctx.forward({ topic: 'out', key: record.key, value: record.value, recordType: 'agentstreams.test.Event' });
          },
        }),
      },
    });
    const driver = new TopologyTestDriver(topology, schemas);
    driver.pipe('in', event('a', 1, 1));
    driver.pipeRaw('in', { key: 'a', value: Buffer.from('not avro') });
    driver.pipe('in', event('a', 2, -1));
    driver.pipe('in', event('a', 3, 1));
    expect(driver.readOutput('out')).toHaveLength(2);
    expect(driver.stateOf('picky', 'seen', 'a')).toBe(2);
    const dead = driver.readDeadLetters();
    expect(
      dead.map((d) => [
        d.headers[deadLetterHeader.stage],
        d.headers[deadLetterHeader.errorCode],
        d.headers[deadLetterHeader.offset],
      ]),
    ).toEqual([
      ['deserialize', 'AS_DESERIALIZE', '1'],
      ['process', 'AS_PROCESS', '2'],
    ]);
    expect(dead[1]!.headers[deadLetterHeader.errorMessage]).toBe('negative amount');
    expect(dead[0]!.raw?.toString()).toBe('not avro');
  });

  it('routes by record type without decoding bodies, keeping keys (so a symbol stays on one partition)', () => {
    const topology = defineTopology({
      application: 'rt',
      topics: { events: { partitions: 6 }, prices: { partitions: 6 }, trades: { partitions: 6 } },
      processors: {
        route: router({
          inputs: ['events'],
          routes: { 'agentstreams.market.PriceTick': 'prices', 'agentstreams.market.Trade': 'trades' },
          outputs: { prices: ['agentstreams.market.PriceTick'], trades: ['agentstreams.market.Trade'] },
        }),
      },
    });
    const driver = new TopologyTestDriver(topology, schemas);
    driver.pipe('events', {
      key: 'ACME',
      recordType: 'agentstreams.market.PriceTick',
      value: { symbol: 'ACME', eventTime: T0, price: 10, bid: null, ask: null, currency: 'USD', venue: '' },
    });
    driver.pipe('events', {
      key: 'ACME',
      recordType: 'agentstreams.market.Trade',
      value: { symbol: 'ACME', eventTime: T0, price: 10, quantity: 5, side: 'BUY', tradeId: 't1' },
    });
    driver.pipe('events', {
      key: 'ACME',
      recordType: 'agentstreams.test.Event',
      value: { key: 'ACME', eventTime: T0, amount: 1 },
    });
    const prices = driver.readOutput('prices');
    const trades = driver.readOutput('trades');
    expect(prices.map((p) => p.recordType)).toEqual(['agentstreams.market.PriceTick']);
    expect(trades.map((p) => p.recordType)).toEqual(['agentstreams.market.Trade']);
    expect(prices[0]!.partition).toBe(trades[0]!.partition);
    expect(driver.readDeadLetters()[0]!.headers[deadLetterHeader.errorCode]).toBe('AS_NO_ROUTE');
  });
});

describe('wall-clock closing', () => {
  it('never emits a window twice: a record for a window the wall clock closed is late', () => {
    const driver = new TopologyTestDriver(
      windowCountTopology('wc', 'in', { wallClockCloseIntervalMs: 1000 }),
      schemas,
      { wallClock: T0 },
    );
    driver.pipe('in', event('a', 5));
    driver.advanceWallClock(80_000);
    driver.pipe('in', event('a', 20));
    driver.advanceWallClock(80_000);
    expect(driver.readOutput('wc.counts')).toHaveLength(1);
    expect(driver.readOutput('wc.late-records')).toHaveLength(1);
  });
});

describe('window kinds through the driver', () => {
  const counts = (driver: TopologyTestDriver) =>
    driver
      .readOutput<{ windowStart: number; windowEnd: number; count: number }>('wc.counts')
      .map((o) => [(o.value.windowStart - T0) / 1000, (o.value.windowEnd - T0) / 1000, o.value.count]);

  it('hopping windows count a record in every window that holds it', () => {
    const driver = new TopologyTestDriver(
      windowCountTopology('wc', 'in', { window: hopping({ size: '1m', advance: '30s' }) }),
      schemas,
    );
    driver.pipe('in', event('a', 45));
    driver.pipe('in', event('a', 200));
    expect(counts(driver)).toEqual([
      [0, 60, 1],
      [30, 90, 1],
    ]);
  });

  it('session windows merge records closer than the gap and close after gap + grace of quiet', () => {
    const driver = new TopologyTestDriver(
      windowCountTopology('wc', 'in', { window: session({ gap: '30s' }) }),
      schemas,
    );
    driver.pipe('in', event('a', 0));
    driver.pipe('in', event('a', 20));
    driver.pipe('in', event('a', 100)); // a new session; the first closes at 20 s + 1 ms + 30 s
    driver.pipe('in', event('a', 200));
    expect(counts(driver)).toEqual([
      [0, 20, 2],
      [100, 100, 1],
    ]);
  });

  it('sliding windows emit one result per distinct set of records within the time difference', () => {
    const driver = new TopologyTestDriver(
      windowCountTopology('wc', 'in', { window: sliding({ timeDifference: '10s' }) }),
      schemas,
    );
    driver.pipe('in', event('a', 100));
    driver.pipe('in', event('a', 105));
    driver.pipe('in', event('a', 300));
    expect(counts(driver)).toEqual([
      [90, 100, 1],
      [95, 105, 2],
      [100.001, 110.001, 1],
    ]);
  });
});
