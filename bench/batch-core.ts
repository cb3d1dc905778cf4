/**
 * Micro-benchmark of the pure batch core (runtime/engine/batch.ts) and of kafkajs' producer-side grouping, with no
 * broker and no Redis: how the cost per record grows with the batch size. The runtime benchmark's batches are as big
 * as one fetch of one partition (AS_CONSUMER_MAX_BYTES_PER_PARTITION), so anything super-linear here caps it.
 *
 *   npx tsx bench/batch-core.ts [--records N] [--sizes 500,2000,8000,16000,32000] [--core path/to/batch.ts]
 *
 * `--core` loads another copy of batch.ts (e.g. a patched copy outside the repository) to measure a change before
 * anyone makes it.
 */
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import avro from 'avsc';
import type { Codec, PreparedBatch, StateEntry, TaskScope, BatchResult } from '../runtime/engine/batch.ts';
import type { SourceRecord } from '../runtime/engine/dead-letter.ts';
import { defineTopology, router, type Topology } from '../runtime/topology/topology.ts';
import { windowCountTopology } from '../test/fixtures/topologies/window-count.ts';

const root = resolve(import.meta.dirname, '..');

const { values: opts } = parseArgs({
  options: {
    records: { type: 'string', default: '96000' },
    sizes: { type: 'string', default: '500,2000,8000,16000,32000' },
    core: { type: 'string' },
    only: { type: 'string', default: 'windowed,router,grouping' },
  },
});

interface Core {
  prepareBatch(scope: TaskScope, sources: SourceRecord[]): PreparedBatch;
  runBatch(
    scope: TaskScope,
    prepared: PreparedBatch,
    state: Map<string, StateEntry>,
    streamTimeBefore: number,
  ): BatchResult;
}

const corePath = resolve(opts.core ?? join(root, 'runtime/engine/batch.ts'));
const core = (await import(pathToFileURL(corePath).href)) as Core;
const RECORDS = Number(opts.records);
const SIZES = opts.sizes.split(',').map(Number);
const only = new Set(opts.only.split(','));

/** Avro in the Confluent wire format with local schema ids, as the engine's codec would see it. */
function localCodec(files: string[]): Codec {
  const byId = new Map<number, { type: avro.Type; name: string }>();
  const byName = new Map<string, number>();
  files.forEach((file, i) => {
    const type = avro.Type.forSchema(JSON.parse(readFileSync(join(root, file), 'utf8')) as avro.Schema);
    byId.set(i + 1, { type, name: type.name! });
    byName.set(type.name!, i + 1);
  });
  return {
    decode(buffer) {
      const id = buffer!.readInt32BE(1);
      const entry = byId.get(id)!;
      return { schemaId: id, recordType: entry.name, value: entry.type.fromBuffer(buffer!.subarray(5)) };
    },
    recordTypeOf(buffer) {
      return byId.get(buffer!.readInt32BE(1))!.name;
    },
    encode(recordType, value) {
      const id = byName.get(recordType)!;
      const type = byId.get(id)!.type;
      if (!type.isValid(value)) throw new Error(`invalid ${recordType}`);
      const body = type.toBuffer(value);
      const out = Buffer.alloc(5 + body.length);
      out.writeInt32BE(id, 1);
      body.copy(out, 5);
      return out;
    },
  };
}

const codec = localCodec([
  'test/fixtures/schemas/Event.avsc',
  'test/fixtures/schemas/WindowCount.avsc',
  'schemas/market/PriceTick.avsc',
  'schemas/market/Trade.avsc',
]);

/** One partition's share of the runtime benchmark: ~17 symbols, 60 ms of event time apart, in order. */
function windowedSources(count: number): SourceRecord[] {
  const start = Date.UTC(2026, 0, 1);
  const keys = Array.from({ length: 17 }, (_, i) => `S${i}`);
  return Array.from({ length: count }, (_, i) => {
    const key = keys[(i * 7) % keys.length]!;
    return {
      topic: 'in',
      partition: 0,
      offset: String(i),
      timestamp: String(start + i * 60),
      key: Buffer.from(key),
      value: codec.encode('agentstreams.test.Event', { key, eventTime: start + i * 60, amount: i % 100 }),
      headers: {},
    };
  });
}

function routerSources(count: number): SourceRecord[] {
  const start = Date.UTC(2026, 0, 1);
  return Array.from({ length: count }, (_, i) => {
    const symbol = `S${i % 17}`;
    const value =
      i % 3 === 2
        ? codec.encode('agentstreams.market.Trade', {
            symbol,
            eventTime: start + i,
            price: 10,
            quantity: 5,
            side: 'BUY',
            tradeId: `t${i}`,
          })
        : codec.encode('agentstreams.market.PriceTick', {
            symbol,
            eventTime: start + i,
            price: 10,
            bid: 9.99,
            ask: 10.01,
            currency: 'USD',
            venue: 'XNAS',
          });
    return {
      topic: 'in',
      partition: 0,
      offset: String(i),
      timestamp: String(start + i),
      key: Buffer.from(symbol),
      value,
      headers: {},
    };
  });
}

/** Runs `sources` through the core in batches of `size`, keeping state between batches as Redis would. */
function runAll(
  topology: Topology,
  processor: string,
  sources: SourceRecord[],
  size: number,
): { ms: number; outputs: number } {
  const spec = topology.processors[processor]!;
  const scope: TaskScope = { topology, processor, spec, partition: 0, codec };
  const store = new Map<string, StateEntry>();
  let streamTime = Number.NEGATIVE_INFINITY;
  let outputs = 0;
  const started = performance.now();
  for (let i = 0; i < sources.length; i += size) {
    const prepared = core.prepareBatch(scope, sources.slice(i, i + size));
    const state = new Map<string, StateEntry>();
    for (const key of prepared.keys) {
      const entry = store.get(key);
      if (entry) state.set(key, JSON.parse(JSON.stringify(entry)) as StateEntry);
    }
    for (const [key, entry] of store)
      if (entry.c !== null && entry.c <= prepared.maxEventTime)
        state.set(key, JSON.parse(JSON.stringify(entry)) as StateEntry);
    const result = core.runBatch(scope, prepared, state, streamTime);
    for (const [key, entry] of result.changes) {
      if (entry === null) store.delete(key);
      else store.set(key, entry);
    }
    streamTime = result.streamTime;
    outputs += result.messages.length;
  }
  return { ms: performance.now() - started, outputs };
}

function row(cells: Array<string | number>): string {
  return cells.map((c, i) => (i === 0 ? String(c).padEnd(10) : String(c).padStart(14))).join('');
}

console.log(`batch core: ${corePath.replace(`${root}/`, '')}, ${RECORDS} records per measurement (best of 3)\n`);

function measure(name: string, topology: Topology, processor: string, sources: SourceRecord[]): void {
  console.log(row([name, 'batch size', 'records/s', 'µs/record', 'outputs']));
  // Warm up the JIT on a small batch size first.
  runAll(topology, processor, sources.slice(0, 20_000), 1000);
  for (const size of SIZES) {
    let best = Infinity;
    let outputs = 0;
    for (let r = 0; r < 3; r += 1) {
      const run = runAll(topology, processor, sources, size);
      best = Math.min(best, run.ms);
      outputs = run.outputs;
    }
    console.log(
      row([
        '',
        size,
        Math.round(sources.length / (best / 1000)).toLocaleString('en-US'),
        ((best * 1000) / sources.length).toFixed(2),
        outputs,
      ]),
    );
  }
  console.log('');
}

if (only.has('windowed'))
  measure('windowed', windowCountTopology('core-bench', 'in'), 'counter', windowedSources(RECORDS));

if (only.has('router')) {
  const topology = defineTopology({
    application: 'core-bench',
    topics: { in: { partitions: 6 }, prices: { partitions: 6 }, trades: { partitions: 6 } },
    processors: {
      router: router({
        inputs: ['in'],
        routes: { 'agentstreams.market.PriceTick': 'prices', 'agentstreams.market.Trade': 'trades' },
        outputs: { prices: ['agentstreams.market.PriceTick'], trades: ['agentstreams.market.Trade'] },
      }),
    },
  });
  measure('router', topology, 'router', routerSources(RECORDS));
}

if (only.has('grouping')) {
  // kafkajs groups every send's messages by partition before encoding; the engine sends a whole batch's outputs
  // for a topic in one call (runner.ts, commit → txn.sendBatch).
  const require = createRequire(import.meta.url);
  type Group = (args: {
    topic: string;
    partitionMetadata: unknown[];
    messages: unknown[];
    partitioner: (a: { message: { partition?: number } }) => number;
  }) => Record<string, unknown[]>;
  const group = require('kafkajs/src/producer/groupMessagesPerPartition.js') as Group;
  const partitionMetadata = Array.from({ length: 6 }, (_, i) => ({ partitionId: i, leader: 1 }));
  const partitioner = ({ message }: { message: { partition?: number } }): number => message.partition ?? 0;
  console.log(row(['kafkajs', 'messages/send', 'ms per send', 'µs/message']));
  for (const n of [1000, 2000, 5000, 10_000, 15_000, 20_000]) {
    const messages = Array.from({ length: n }, (_, i) => ({ key: 'k', value: Buffer.alloc(1), partition: i % 1 }));
    group({ topic: 't', partitionMetadata, messages: messages.slice(0, 500), partitioner });
    const started = performance.now();
    group({ topic: 't', partitionMetadata, messages, partitioner });
    const ms = performance.now() - started;
    console.log(row(['', n, ms.toFixed(1), ((ms * 1000) / n).toFixed(2)]));
  }
}
