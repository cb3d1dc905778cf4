/**
 * Typed handles: what the compiler refuses (the `@ts-expect-error` lines fail `tsc` if they ever compile), what
 * `topic()`, the builders and `defineTopology` refuse at start, and what the runtime dead-letters when a record's
 * type is not the one its input handle promised.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  AgentStreamsError,
  defineTopology,
  ErrorCode,
  loadSchemas,
  processor,
  router,
  store,
  topic,
  tumbling,
  windowed,
  type StreamRecord,
} from '../../../runtime/index.ts';
import { TopologyTestDriver } from '../../../runtime/testing/index.ts';
import type { PriceTick, Trade } from '../../../schemas/generated/types.ts';

const root = join(import.meta.dirname, '../../..');
const schemas = [...loadSchemas(join(root, 'schemas')), ...loadSchemas(join(root, 'test/fixtures/schemas'))];

interface Event {
  key: string;
  eventTime: number;
  amount: number;
}
interface WindowCount {
  key: string;
  windowStart: number;
  windowEnd: number;
  count: number;
  sum: number;
  final: boolean;
}
const EventType = 'agentstreams.test.Event';
const WindowCountType = 'agentstreams.test.WindowCount';
const T0 = Date.UTC(2026, 0, 1);

function refused(build: () => unknown): string {
  try {
    build();
  } catch (error) {
    expect(error).toBeInstanceOf(AgentStreamsError);
    expect((error as AgentStreamsError).code).toBe(ErrorCode.TOPOLOGY_INVALID);
    return (error as Error).message;
  }
  throw new Error('expected a refusal');
}

/** A topology of typed handles: sums per key, and counts per tumbling minute. */
function sums() {
  const events = topic<Event>('events', EventType);
  const totals = topic<Event>('totals', EventType);
  const counts = topic<WindowCount>('counts', WindowCountType);
  const sum = store<number>('sum');
  const topology = defineTopology({
    application: 'typed',
    topics: { events: { partitions: 2 }, totals: { partitions: 2 }, counts: { partitions: 2 } },
    processors: {
      summer: processor({
        inputs: [events],
        outputs: [totals],
        stores: [sum],
        process: (record, ctx) => {
          const total = (ctx.store(sum).get() ?? 0) + record.value.amount;
          ctx.store(sum).set(total);
          ctx.forward(totals, { key: record.key, value: { ...record.value, amount: total } });
        },
      }),
      counter: windowed({
        inputs: [events],
        outputs: [counts],
        store: store('minutes'),
        aggregation: {
          window: tumbling({ size: '1m' }),
          init: () => ({ count: 0, sum: 0 }),
          add: (acc, event) => ({ count: acc.count + 1, sum: acc.sum + event.amount }),
        },
        emit: 'update',
        onResult: (result, ctx) =>
          ctx.forward(counts, {
            key: ctx.key,
            value: {
              key: ctx.key,
              windowStart: result.start,
              windowEnd: result.end,
              count: result.value.count,
              sum: result.value.sum,
              final: result.final,
            },
          }),
      }),
    },
  });
  return { topology, events, totals, counts, sum };
}

describe('typed handles', () => {
  it('run a processor and a windowed aggregation end to end: typed input, forward by handle, state by handle', () => {
    const { topology, events, totals, counts, sum } = sums();
    expect(topology.processors.summer).toMatchObject({
      inputs: ['events'],
      inputTypes: { events: [EventType] },
      outputs: { totals: [EventType] },
      stores: ['sum'],
    });
    const driver = new TopologyTestDriver(topology, schemas);
    driver.pipe(events, { key: 'a', value: { key: 'a', eventTime: T0, amount: 2 } });
    driver.pipe(events, { key: 'a', value: { key: 'a', eventTime: T0 + 1000, amount: 3 } });
    const out: Array<{ value: Event }> = driver.readOutput(totals);
    expect(out.map((o) => o.value.amount)).toEqual([2, 5]);
    const minute: number[] = driver.readOutput(counts).map((o) => o.value.sum);
    expect(minute).toEqual([2, 5]);
    const state: number | undefined = driver.stateOf('summer', sum, 'a');
    expect(state).toBe(5);
  });

  it('dead-letter a record whose type the input handle does not declare, before the processor sees it', () => {
    const { topology, totals } = sums();
    const driver = new TopologyTestDriver(topology, schemas);
    driver.pipe('events', {
      key: 'a',
      recordType: WindowCountType,
      value: { key: 'a', windowStart: 0, windowEnd: 1, count: 1, sum: 1, final: true },
    });
    expect(driver.readOutput(totals)).toHaveLength(0);
    const dead = driver.readDeadLetters();
    expect(dead).toHaveLength(2); // one per processor reading the topic
    expect(dead[0]!.headers['as.dlq.error.code']).toBe(ErrorCode.DESERIALIZE);
    expect(dead[0]!.headers['as.dlq.error.message']).toContain(
      `A ${WindowCountType} record on "events", where processor "summer" reads only ${EventType}`,
    );
  });

  it('give a topic of several record types a union discriminated by recordType, and route it by handle', () => {
    type Market = { 'agentstreams.market.PriceTick': PriceTick; 'agentstreams.market.Trade': Trade };
    const market = topic<Market>('market', ['agentstreams.market.PriceTick', 'agentstreams.market.Trade']);
    const prices = topic<PriceTick>('prices', 'agentstreams.market.PriceTick');
    const trades = topic<Trade>('trades', 'agentstreams.market.Trade');
    const seen: string[] = [];
    const topology = defineTopology({
      application: 'routed',
      topics: { market: { partitions: 1 }, prices: { partitions: 1 }, trades: { partitions: 1 } },
      processors: {
        router: router({
          inputs: [market],
          routes: { 'agentstreams.market.PriceTick': prices, 'agentstreams.market.Trade': trades },
        }),
        both: processor({
          inputs: [market],
          process: (record) => {
            if (record.recordType === 'agentstreams.market.Trade') seen.push(`trade ${record.value.quantity}`);
            else seen.push(`tick ${record.value.price}`);
          },
        }),
      },
    });
    expect(topology.processors.router).toMatchObject({
      routes: { 'agentstreams.market.PriceTick': 'prices' },
      outputs: { prices: ['agentstreams.market.PriceTick'], trades: ['agentstreams.market.Trade'] },
    });
    const driver = new TopologyTestDriver(topology, schemas);
    driver.pipe(market, {
      key: 'X',
      recordType: 'agentstreams.market.Trade',
      value: { symbol: 'X', eventTime: T0, price: 1, quantity: 7, side: 'BUY', tradeId: 't' },
    });
    driver.pipe(market, {
      key: 'X',
      recordType: 'agentstreams.market.PriceTick',
      value: { symbol: 'X', eventTime: T0, price: 9, bid: null, ask: null, currency: 'USD', venue: 'V' },
    });
    expect(seen).toEqual(['trade 7', 'tick 9']);
    expect(driver.readOutput(trades).map((o) => o.value.quantity)).toEqual([7]);
    expect(driver.readOutput(prices).map((o) => o.value.price)).toEqual([9]);
  });

  it('refuse bad handles with the reason', () => {
    expect(refused(() => topic<Event>('bad topic', EventType))).toContain('is not a Kafka topic name');
    expect(refused(() => topic<Event>('events', 'Event type'))).toContain('is not a full Avro name');
    expect(refused(() => topic<{ a: Event }>('events', []))).toContain('declares no record type');
    expect(refused(() => store<number>('Sums'))).toContain('Invalid store name "Sums"');
  });

  it('refuse a route to a topic whose handle does not hold the record type', () => {
    const market = topic<{ 'a.X': Event; 'a.Y': Event }>('market', ['a.X', 'a.Y']);
    const ys = topic<Event>('ys', 'a.Y');
    // @ts-expect-error: the route's record type is keyed by the input's types only
    expect(refused(() => router({ inputs: [market], routes: { 'a.X': ys, 'a.Z': ys } }))).toContain(
      'routes a.X to "ys", whose handle holds only a.Y',
    );
  });

  it('refuse at start a topology where a processor writes a type that a typed reader of the topic does not expect', () => {
    const events = topic<Event>('events', EventType);
    const wrong = topic<WindowCount>('events', WindowCountType);
    const message = refused(() =>
      defineTopology({
        application: 'mixed',
        topics: { in: { partitions: 1 }, events: { partitions: 1 } },
        processors: {
          writer: processor({ inputs: ['in'], outputs: [wrong], process: () => {} }),
          reader: processor({ inputs: [events], process: () => {} }),
        },
      }),
    );
    expect(message).toContain(
      `processor "writer" writes ${WindowCountType} to "events", but processor "reader" reads it as ${EventType}; use one topic handle for both`,
    );
  });

  it('refuse at run time a forward of a record type the handle does not hold, or an undeclared output', () => {
    const events = topic<Event>('events', EventType);
    const out = topic<Event>('out', EventType);
    const other = topic<Event>('other', EventType);
    const topology = defineTopology({
      application: 'undeclared',
      topics: { events: { partitions: 1 }, out: { partitions: 1 }, other: { partitions: 1 } },
      processors: {
        p: processor({
          inputs: [events],
          outputs: [out],
          process: (record, ctx) => ctx.forward(other, { key: record.key, value: record.value }),
        }),
      },
    });
    const driver = new TopologyTestDriver(topology, schemas);
    driver.pipe(events, { key: 'a', value: { key: 'a', eventTime: T0, amount: 1 } });
    expect(driver.readDeadLetters()[0]!.headers['as.dlq.error.message']).toContain(
      'Processor "p" forwarded agentstreams.test.Event to "other", which its outputs do not declare.',
    );
  });

  it('type-check values, records and state (compile-time: each @ts-expect-error must be an error)', () => {
    const events = topic<Event>('events', EventType);
    const counts = topic<WindowCount>('counts', WindowCountType);
    const sum = store<number>('sum');
    const specs = [
      processor({
        inputs: [events],
        outputs: [counts],
        stores: [sum],
        process: (record, ctx) => {
          const amount: number = record.value.amount;
          // @ts-expect-error: Event has no field price
          void record.value.price;
          // @ts-expect-error: the store holds numbers
          ctx.store(sum).set('many');
          // @ts-expect-error: counts holds WindowCount, not Event
          ctx.forward(counts, { key: record.key, value: record.value });
          ctx.forward(counts, {
            key: record.key,
            value: { key: 'k', windowStart: 0, windowEnd: 1, count: amount, sum: amount, final: false },
          });
        },
      }),
      processor({
        inputs: [events],
        // @ts-expect-error: a processor of trades cannot read a topic of events
        process: (record: StreamRecord<Trade>) => void record,
      }),
      windowed({
        inputs: [events],
        store: 'w',
        aggregation: {
          window: tumbling({ size: '1m' }),
          init: () => 0,
          // @ts-expect-error: the aggregation folds events, and Event has no quantity
          add: (acc: number, trade: Trade) => acc + trade.quantity,
        },
        emit: 'close',
        onResult: () => {},
      }),
      windowed({
        inputs: [events],
        store: 'w',
        value: (record) => record.value.amount,
        aggregation: {
          window: tumbling({ size: '1m' }),
          init: () => '',
          add: (acc, amount) => acc + amount.toFixed(0),
        },
        emit: 'close',
        // The accumulator's type reaches onResult.
        onResult: (result) => void result.value.toUpperCase(),
      }),
    ];
    expect(specs).toHaveLength(4);
  });
});
