/**
 * The fuzz corpus on the real stack: malformed frames for every market schema, generated from the schemas
 * themselves, each among good records from the synthetic feed, through the whole signal fleet run as member
 * processes (router, every agent, the downstream findings processors in rules-only mode).
 *
 * The corpus, per schema: a wrong magic byte, an unknown schema id, a header cut short; the body truncated and
 * with trailing bytes; for every array, map, string and bytes field a count or length bomb (500,000,000 items,
 * 2^40 bytes) and a negative length or count; for every union and enum an index past the end and a negative one;
 * NaN and ±Infinity in every float and double; every `range` bound crossed; an event time three days ahead of the
 * wall clock (inside the schema's range, so only records.maxEventTimeAheadMs catches it); a null key. Plus a null
 * and an empty value, and one valid NewsItem of about 900 KB that must be processed, not dead-lettered.
 *
 * What must hold: every member stays up; each bad frame is dead-lettered exactly once by each processor that meets
 * it (the router for frames it cannot route; every consumer group of the signal topic for frames it forwards), with
 * provenance headers that point at the very record carrying the frame's `fuzz-id`, and with the expected stage,
 * error code and reason; the router forwards exactly the good records and the agent-level frames, once each; every
 * consumer group commits past the last record of its inputs; nothing good is dead-lettered.
 *
 * Deterministic: the corpus and its order are seeded; event times are fixed offsets from the run's start; every
 * wait is on a condition with a deadline.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import avro from 'avsc';
import { Redis } from 'ioredis';
import type { Message } from 'kafkajs';
import type { KafkaPort } from '../../runtime/kafka/port.ts';
import { describe, expect, it } from 'vitest';
import { startMember, stopMembers, waitUntilStarted, type Member } from '../../cli/fleet.ts';
import { projectRoot } from '../../cli/paths.ts';
import { marketFeed } from '../../connectors/synthetic-feed.ts';
import { deadLetterHeader } from '../../runtime/engine/dead-letter.ts';
import { ensureTopics } from '../../runtime/engine/topics.ts';
import { ErrorCode } from '../../runtime/errors.ts';
import { parseSchemaGraph, type SchemaNode } from '../../runtime/serde/bounded.ts';
import { AvroSerde, registryClient } from '../../runtime/serde/avro.ts';
import { registerSchemas } from '../../runtime/serde/schemas.ts';
import { writeTable } from '../../runtime/state/tables.ts';
import type { Topology } from '../../runtime/topology/topology.ts';
import { marketSignals } from '../../topologies/market-signals.ts';
import { mulberry32 } from '../support/events.ts';
import { config, kafkaClient, uniqueName } from '../support/stack.ts';
import { migrateDatabase } from '../../sinks/clickhouse/schema.ts';
import { openClickHouse } from '../../sinks/clickhouse/client.ts';
import { clickhouseConfig, portfolios, schemas } from './fleet-run.ts';
import { minimal, varint } from '../support/avro-bytes.ts';

const SEED = 20_261_125;
const MINUTE = 60_000;
const DAY = 86_400_000;
const TOPOLOGY_FILE = join(projectRoot, 'topologies/market-signals.ts');
const MAX_AHEAD_MS = DAY;
const FUZZ_ID = 'fuzz-id';
const marketSchemas = schemas.filter((s) => s.subject.startsWith('agentstreams.market.'));

// ---- Avro bytes ------------------------------------------------------------------------------------------------

/** A place in a body where a declared length, count or index is read, with the valid bytes that lead up to it. */
interface Target {
  path: string;
  kind: 'array' | 'map' | 'string' | 'bytes' | 'union' | 'enum';
  /** Branches of a union, symbols of an enum. */
  size: number;
  prefix: Buffer;
}

function targets(node: SchemaNode, path: string, depth = 0): Target[] {
  if (depth > 8) return [];
  const under = (list: Target[], lead: Buffer): Target[] =>
    list.map((t) => ({ ...t, prefix: Buffer.concat([lead, t.prefix]) }));
  switch (node.kind) {
    case 'string':
    case 'bytes':
      return [{ path, kind: node.kind, size: 0, prefix: Buffer.alloc(0) }];
    case 'enum':
      return [{ path, kind: 'enum', size: node.symbols, prefix: Buffer.alloc(0) }];
    case 'array':
      return [
        { path, kind: 'array', size: 0, prefix: Buffer.alloc(0) },
        ...under(targets(node.items, `${path}[]`, depth + 1), varint(1)),
      ];
    case 'map':
      return [
        { path, kind: 'map', size: 0, prefix: Buffer.alloc(0) },
        { path: `${path} key`, kind: 'string', size: 0, prefix: varint(1) },
        ...under(targets(node.values, `${path}{}`, depth + 1), Buffer.concat([varint(1), varint(0)])),
      ];
    case 'union':
      return [
        { path, kind: 'union', size: node.branches.length, prefix: Buffer.alloc(0) },
        ...node.branches.flatMap((b, i) => under(targets(b, path, depth + 1), varint(i))),
      ];
    case 'record':
      return node.fields.flatMap((f, i) =>
        under(
          targets(f.type, path ? `${path}.${f.name}` : f.name, depth + 1),
          Buffer.concat(node.fields.slice(0, i).map((g) => minimal(g.type))),
        ),
      );
    default:
      return [];
  }
}

// ---- Values from the schema JSON (it keeps the `range` attributes and enum symbols) -------------------------

type Json = Record<string, unknown>;
interface Range {
  min?: number;
  max?: number;
  exclusiveMin?: boolean;
  exclusiveMax?: boolean;
  finite?: boolean;
}

const numericKinds = new Set(['int', 'long', 'float', 'double']);
const typeName = (t: unknown): string =>
  typeof t === 'string' ? t : Array.isArray(t) ? 'union' : String((t as Json).type);
const isTimestamp = (t: unknown): boolean =>
  typeof t === 'object' && t !== null && (t as Json).logicalType === 'timestamp-millis';

/** A valid value of `type`: optional unions filled (first non-null branch), numbers inside their field's range. */
function baseValue(type: unknown, range: Range | undefined, eventTime: number): unknown {
  if (Array.isArray(type)) return baseValue(type.find((b) => b !== 'null') ?? 'null', range, eventTime);
  if (isTimestamp(type)) return eventTime;
  const name = typeName(type);
  switch (name) {
    case 'null':
      return null;
    case 'boolean':
      return true;
    case 'string':
      return 'FUZZ';
    case 'bytes':
      return Buffer.from('fuzz');
    case 'int':
    case 'long':
    case 'float':
    case 'double': {
      let v = range?.min === undefined ? 1 : range.min + 1;
      if (range?.max !== undefined && v > range.max) v = range.max;
      return v;
    }
    case 'array':
      return [baseValue((type as Json).items, range, eventTime)];
    case 'map':
      return { k: baseValue((type as Json).values, range, eventTime) };
    case 'enum':
      return ((type as Json).symbols as string[])[0];
    case 'fixed':
      return Buffer.alloc((type as Json).size as number);
    case 'record': {
      const out: Json = {};
      for (const f of (type as Json).fields as Json[])
        out[f.name as string] = baseValue(f.type, f.range as Range | undefined, eventTime);
      return out;
    }
    default:
      throw new Error(`fuzz: no base value for type ${name} (named type references are not followed)`);
  }
}

/** Every number a record holds (through optional unions and nested records), with its documented range. */
interface NumberField {
  path: string[];
  floating: boolean;
  range: Range;
}

function numberFields(record: Json, path: string[] = []): NumberField[] {
  const out: NumberField[] = [];
  for (const f of record.fields as Json[]) {
    const branches = Array.isArray(f.type) ? (f.type as unknown[]) : [f.type];
    const at = [...path, f.name as string];
    const numeric = branches.map(typeName).filter((n) => numericKinds.has(n));
    if (numeric.length > 0)
      out.push({
        path: at,
        floating: numeric.some((n) => n === 'float' || n === 'double'),
        range: (f.range as Range | undefined) ?? {},
      });
    for (const b of branches) if (typeName(b) === 'record') out.push(...numberFields(b as Json, at));
  }
  return out;
}

function withField(value: Json, path: string[], v: unknown): Json {
  const copy = structuredClone(value);
  let at: Json = copy;
  for (const p of path.slice(0, -1)) at = at[p] as Json;
  at[path.at(-1)!] = v;
  return copy;
}

// ---- The corpus ------------------------------------------------------------------------------------------------

type Expected = { stage: string; code: string; reason?: string };

interface Frame {
  id: string;
  kind: string;
  schema: string;
  key: string | null;
  value: Buffer | null;
  /** The topic the router forwards it to, or null when the router itself must dead-letter it. */
  route: string | null;
  /** Dead letters it must cause, by processor: none for a good record. */
  deadLetters: Map<string, Expected>;
}

function frameBytes(schemaId: number, body: Buffer): Buffer {
  const out = Buffer.alloc(5 + body.length);
  out.writeInt32BE(schemaId, 1);
  body.copy(out, 5);
  return out;
}

interface CorpusInput {
  topology: Topology;
  schemaIds: Map<string, number>;
  /** Event time of the bad frames' otherwise valid fields, and the wall clock at the run's start. */
  eventTime: number;
  now: number;
  symbols: string[];
}

function buildBadFrames(input: CorpusInput): Frame[] {
  const { topology, schemaIds, now, eventTime } = input;
  const router = topology.processors.router!;
  if (router.kind !== 'router') throw new Error('fuzz: the topology has no router named "router"');
  const consumersOf = (topic: string): string[] =>
    Object.entries(topology.processors)
      .filter(([, spec]) => spec.inputs.includes(topic))
      .map(([name]) => name);
  const random = mulberry32(SEED);
  const frames: Frame[] = [];
  let n = 0;
  const add = (
    schema: string,
    kind: string,
    value: Buffer | null,
    at: 'router' | 'agent',
    expected: Expected,
    key: string | null = input.symbols[Math.floor(random() * input.symbols.length)]!,
  ): void => {
    const route = at === 'router' ? null : router.routes[schema]!;
    const deadLetters = new Map<string, Expected>();
    if (route === null) deadLetters.set('router', expected);
    else for (const name of consumersOf(route)) deadLetters.set(name, expected);
    frames.push({ id: `bad-${String(n++).padStart(4, '0')}-${kind}`, kind, schema, key, value, route, deadLetters });
  };
  const deserialize = (reason: string): Expected => ({ stage: 'deserialize', code: ErrorCode.DESERIALIZE, reason });

  add('-', 'empty', null, 'router', deserialize('empty'));
  add('-', 'empty', Buffer.alloc(0), 'router', deserialize('empty'));
  for (const s of marketSchemas) {
    const json = s.schema as Json;
    const type = avro.Type.forSchema(s.schema as avro.Schema);
    const id = schemaIds.get(s.subject)!;
    const base = baseValue(json, undefined, eventTime) as Json;
    const valid = type.toBuffer(base);
    const good = frameBytes(id, valid);
    // Header faults: the router cannot tell the record type.
    const magic = Buffer.from(good);
    magic[0] = 1;
    add(s.subject, 'magic-byte', magic, 'router', deserialize('magic-byte'));
    add(s.subject, 'unknown-schema', frameBytes(999_999_999, valid), 'router', deserialize('unknown-schema'));
    add(s.subject, 'unknown-schema', frameBytes(-1, valid), 'router', deserialize('unknown-schema'));
    add(s.subject, 'empty', good.subarray(0, 3), 'router', deserialize('empty'));
    // Body faults: the header routes it, the agents cannot decode it.
    for (const cut of new Set([0, 1, valid.length >> 1, valid.length - 1]))
      add(s.subject, 'truncated', frameBytes(id, valid.subarray(0, cut)), 'agent', deserialize('body'));
    add(
      s.subject,
      'trailing-bytes',
      frameBytes(id, Buffer.concat([valid, Buffer.from([0])])),
      'agent',
      deserialize('body'),
    );
    const pad = Buffer.alloc(64);
    for (const t of targets(parseSchemaGraph(s.schema), '')) {
      const body = (kind: string, bytes: Buffer): void =>
        add(s.subject, kind, frameBytes(id, Buffer.concat([t.prefix, bytes, pad])), 'agent', deserialize('body'));
      if (t.kind === 'array' || t.kind === 'map') {
        body('count-bomb', varint(500_000_000));
        body('negative-count', Buffer.concat([varint(-500_000_000), varint(2)]));
      } else if (t.kind === 'string' || t.kind === 'bytes') {
        body('length-bomb', varint(2 ** 40));
        body('negative-length', varint(-3));
      } else {
        body(`${t.kind}-index`, varint(t.size));
        body(`${t.kind}-index`, varint(-1));
      }
    }
    // Value faults: well-formed Avro, outside what the schema documents.
    const encoded = (value: Json): Buffer => frameBytes(id, type.toBuffer(value));
    for (const f of numberFields(json)) {
      const { min, max, exclusiveMin, exclusiveMax } = f.range;
      if (f.floating && f.range.finite !== false)
        for (const v of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY])
          add(s.subject, 'non-finite', encoded(withField(base, f.path, v)), 'agent', deserialize('range'));
      if (min !== undefined)
        add(
          s.subject,
          'out-of-range',
          encoded(withField(base, f.path, exclusiveMin ? min : min - 1)),
          'agent',
          deserialize('range'),
        );
      if (max !== undefined)
        add(
          s.subject,
          'out-of-range',
          encoded(withField(base, f.path, exclusiveMax ? max : max + 1)),
          'agent',
          deserialize('range'),
        );
    }
    if (!('eventTime' in base)) throw new Error(`fuzz: ${s.subject} has no eventTime field`);
    add(s.subject, 'event-time-ahead', encoded({ ...base, eventTime: now + 3 * DAY }), 'agent', {
      stage: 'deserialize',
      code: ErrorCode.RECORD_OUT_OF_RANGE,
      reason: 'event-time-ahead',
    });
    // A null key fails only where state is kept by key; a stateless agent processes the record.
    const route = router.routes[s.subject]!;
    const keyed = consumersOf(route).filter((name) => topology.storesOf(name).length > 0);
    const nullKey: Frame = {
      id: `bad-${String(n++).padStart(4, '0')}-null-key`,
      kind: 'null-key',
      schema: s.subject,
      key: null,
      value: good,
      route,
      deadLetters: new Map(),
    };
    for (const name of keyed) nullKey.deadLetters.set(name, { stage: 'process', code: ErrorCode.MISSING_KEY });
    if (nullKey.deadLetters.size === 0) nullKey.id = nullKey.id.replace('bad-', 'good-');
    frames.push(nullKey);
  }
  return frames;
}

// ---- Reading topics to their end -----------------------------------------------------------------------------

interface ReadRecord {
  topic: string;
  partition: number;
  offset: number;
  key: string | null;
  size: number;
  headers: Record<string, string>;
}

/**
 * Every record of `topics` up to the high watermarks read at the start (read_committed). Progress is taken from the
 * consumer's batch events, which also report batches holding only transaction markers.
 */
async function readTopics(kafka: KafkaPort, topics: string[], timeoutMs = 60_000): Promise<ReadRecord[]> {
  const admin = kafka.admin();
  await admin.connect();
  const ends = new Map<string, number>();
  for (const topic of topics)
    for (const o of await admin.fetchTopicOffsets(topic))
      if (Number(o.high) > Number(o.low)) ends.set(`${topic}:${o.partition}`, Number(o.high));
  await admin.disconnect();
  const out: ReadRecord[] = [];
  if (ends.size === 0) return out;
  const consumer = kafka.consumer({ groupId: uniqueName('fuzz-read'), readUncommitted: false, maxWaitTimeInMs: 100 });
  consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
    const key = `${payload.topic}:${payload.partition}`;
    const end = ends.get(key);
    if (end !== undefined && Number(payload.lastOffset) >= end - 1) ends.delete(key);
  });
  await consumer.connect();
  for (const topic of topics) await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachBatch: async ({ batch }) => {
      for (const m of batch.messages) {
        const headers: Record<string, string> = {};
        for (const [name, value] of Object.entries(m.headers ?? {}))
          if (value !== undefined) headers[name] = String(value);
        out.push({
          topic: batch.topic,
          partition: batch.partition,
          offset: Number(m.offset),
          key: m.key === null ? null : m.key.toString(),
          size: m.value?.length ?? -1,
          headers,
        });
      }
    },
  });
  const deadline = Date.now() + timeoutMs;
  while (ends.size > 0 && Date.now() < deadline) await sleep(50);
  await consumer.disconnect();
  if (ends.size > 0) throw new Error(`fuzz: ${[...ends.keys()].join(', ')} not read to the end within ${timeoutMs} ms`);
  return out;
}

/** Processors in waves: a wave's inputs are written only by earlier waves (or by the test). */
function waves(topology: Topology, eventsTopic: string): string[][] {
  const producers = new Map<string, string[]>();
  for (const [name, spec] of Object.entries(topology.processors))
    for (const topic of Object.keys(spec.outputs ?? {})) producers.set(topic, [...(producers.get(topic) ?? []), name]);
  const depth = new Map<string, number>();
  const depthOf = (name: string, seen: Set<string> = new Set()): number => {
    const known = depth.get(name);
    if (known !== undefined) return known;
    if (seen.has(name)) throw new Error(`fuzz: topology cycle through ${name}`);
    seen.add(name);
    const inputs = topology.processors[name]!.inputs;
    const d = inputs.includes(eventsTopic)
      ? 0
      : 1 + Math.max(0, ...inputs.flatMap((t) => producers.get(t) ?? []).map((p) => depthOf(p, seen)));
    depth.set(name, d);
    return d;
  };
  const out: string[][] = [];
  for (const name of Object.keys(topology.processors)) (out[depthOf(name)] ??= []).push(name);
  return out.filter((w) => w.length > 0);
}

// ---- The test --------------------------------------------------------------------------------------------------

describe('fuzz corpus through the fleet on the real stack', () => {
  it('dead-letters every malformed frame once per processor that meets it, processes every good record, and no member goes down', async () => {
    const started = Date.now();
    const kafka = kafkaClient();
    // The LLM members audit to ClickHouse even in rules-only mode: they get a database of their own.
    const database = uniqueName('fuzz');
    const application = database.replaceAll('_', '-');
    await migrateDatabase(clickhouseConfig(database), projectRoot);
    const eventsTopic = `${application}.market.events`;
    const topology = marketSignals({ application, eventsTopic });
    const registry = registryClient(config);
    await registerSchemas(config, registry, schemas);
    const serde = new AvroSerde(registry);
    const schemaIds = new Map<string, number>();
    for (const s of marketSchemas) schemaIds.set(s.subject, (await serde.writerFor(s.subject)).id);
    const redis = new Redis(config.redis.url);
    await writeTable(redis, kafka, topology, 'portfolios', portfolios, schemas);
    redis.disconnect();
    const admin = kafka.admin();
    await admin.connect();
    for (const name of Object.keys(topology.processors)) await ensureTopics(admin, topology, name);

    // Good records: a seeded minute of the synthetic feed, ending four minutes before now (inside every bound).
    const now = Date.now();
    const feed = [
      ...marketFeed({
        seed: SEED,
        symbols: 8,
        rate: 8,
        duration: '60s',
        start: now - 5 * MINUTE,
        newsPerMinute: 6,
        filingsPerHour: 300,
        intraday: false,
      }),
    ];
    const symbols = [...new Set(feed.map((e) => e.key))].sort();
    const router = topology.processors.router!;
    if (router.kind !== 'router') throw new Error('fuzz: no router');
    const goodFrames: Frame[] = feed.map((e, i) => ({
      id: `good-${String(i).padStart(4, '0')}`,
      kind: 'good',
      schema: e.recordType,
      key: e.key,
      value: serde.encode(e.recordType, e.value),
      route: router.routes[e.recordType]!,
      deadLetters: new Map(),
    }));
    expect(new Set(goodFrames.map((f) => f.schema))).toEqual(new Set(marketSchemas.map((s) => s.subject)));
    // One valid record close to the broker's 1 MiB message.max.bytes default: a NewsItem with a 900 KB body.
    const newsType = 'agentstreams.market.NewsItem';
    const big = serde.encode(newsType, {
      id: 'fuzz-big',
      symbols: [symbols[0]!],
      headline: 'A very long story',
      body: 'x'.repeat(900_000),
      source: 'fuzz',
      eventTime: now - 3 * MINUTE,
      url: null,
    });
    expect(big.length).toBeGreaterThan(900_000);
    expect(big.length).toBeLessThan(1_000_000);
    goodFrames.push({
      id: 'good-big-news',
      kind: 'oversized-valid',
      schema: newsType,
      key: symbols[0]!,
      value: big,
      route: router.routes[newsType]!,
      deadLetters: new Map(),
    });

    const badFrames = buildBadFrames({ topology, schemaIds, eventTime: now - 3 * MINUTE, now, symbols });
    goodFrames.push(...badFrames.filter((f) => f.deadLetters.size === 0));
    const bad = badFrames.filter((f) => f.deadLetters.size > 0);
    // Every bad frame between good ones, in a seeded order.
    const random = mulberry32(SEED + 1);
    const order = [...bad];
    for (let i = order.length - 1; i > 0; i -= 1) {
      const j = Math.floor(random() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    const frames: Frame[] = [];
    const perGap = Math.floor(goodFrames.length / (order.length + 1));
    let g = 0;
    for (const frame of order) {
      for (let k = 0; k < Math.max(1, perGap); k += 1) if (g < goodFrames.length) frames.push(goodFrames[g++]!);
      frames.push(frame);
    }
    frames.push(...goodFrames.slice(g));

    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    const toMessage = (f: Frame): Message => ({ key: f.key, value: f.value, headers: { [FUZZ_ID]: f.id } });
    // Sent in order; the ~900 KB record alone, so that no produce batch nears message.max.bytes.
    let chunk: Message[] = [];
    const flush = async (): Promise<void> => {
      if (chunk.length > 0) await producer.send({ topic: eventsTopic, acks: -1, messages: chunk });
      chunk = [];
    };
    for (const f of frames) {
      if ((f.value?.length ?? 0) > 100_000) {
        await flush();
        chunk.push(toMessage(f));
        await flush();
      } else {
        chunk.push(toMessage(f));
        if (chunk.length >= 200) await flush();
      }
    }
    await flush();
    await producer.disconnect();

    const env: Record<string, string> = {
      AS_FLEET_APP: application,
      AS_FLEET_EVENTS_TOPIC: eventsTopic,
      AS_CLICKHOUSE_DATABASE: database,
      AS_MAX_EVENT_TIME_AHEAD_MS: String(MAX_AHEAD_MS),
      AS_WALL_CLOCK_OFFSET_MS: '0',
      AS_CONSUMER_SESSION_TIMEOUT_MS: '6000',
      ANTHROPIC_API_KEY: '',
    };
    const names = Object.keys(topology.processors);
    const members: Member[] = names.map((name) => startMember(TOPOLOGY_FILE, name, env));
    const down = (): string[] =>
      members
        .filter((m) => m.child.exitCode !== null || m.child.signalCode !== null)
        .map((m) => `${m.processor} (${m.child.exitCode ?? m.child.signalCode})`);
    const read = new Map<string, ReadRecord[]>();
    let codes: Array<number | null>;
    try {
      await waitUntilStarted(members, 120_000);
      const startedIn = Date.now() - started;

      // Wave by wave: read the wave's inputs to their end (final once the earlier waves are done), then wait until
      // each consumer group has committed past the last record of every partition.
      const deadline = Date.now() + 120_000;
      for (const wave of waves(topology, eventsTopic)) {
        const inputs = [...new Set(wave.flatMap((name) => topology.processors[name]!.inputs))];
        const records = await readTopics(kafka, inputs);
        for (const topic of inputs)
          read.set(
            topic,
            records.filter((r) => r.topic === topic),
          );
        const last = new Map<string, number>();
        for (const r of records)
          last.set(`${r.topic}:${r.partition}`, Math.max(last.get(`${r.topic}:${r.partition}`) ?? -1, r.offset));
        for (;;) {
          expect(down(), 'members that exited').toEqual([]);
          const behind: string[] = [];
          for (const name of wave) {
            const committed = await admin.fetchOffsets({
              groupId: topology.groupId(name),
              topics: topology.processors[name]!.inputs,
            });
            for (const { topic, partitions } of committed) {
              for (const { partition, offset } of partitions) {
                const lastOffset = last.get(`${topic}:${partition}`);
                if (lastOffset !== undefined && Number(offset) <= lastOffset)
                  behind.push(`${name} ${topic}:${partition} at ${offset}, last record ${lastOffset}`);
              }
            }
          }
          if (behind.length === 0) break;
          if (Date.now() > deadline)
            throw new Error(`fuzz: consumer groups behind after 120 s: ${behind.slice(0, 5).join('; ')}`);
          await sleep(250);
        }
      }
      expect(down(), 'members that exited').toEqual([]);

      // The events topic holds every frame once.
      const events = read.get(eventsTopic)!;
      expect(events.map((r) => r.headers[FUZZ_ID]).sort()).toEqual(frames.map((f) => f.id).sort());

      // The router forwarded exactly the good records and the frames it could route, once each, by type.
      for (const topic of new Set(Object.values(router.routes))) {
        const expected = frames
          .filter((f) => f.route === topic)
          .map((f) => f.id)
          .sort();
        expect(
          read
            .get(topic)!
            .map((r) => r.headers[FUZZ_ID])
            .sort(),
          topic,
        ).toEqual(expected);
      }
      const bigForwarded = read.get(router.routes[newsType]!)!.find((r) => r.headers[FUZZ_ID] === 'good-big-news');
      expect(bigForwarded?.size).toBe(big.length);

      // Each bad frame: one dead letter per processor that met it, pointing at the record that carried it.
      const deadLetters = await readTopics(kafka, [topology.deadLetterTopic]);
      const byId = new Map(frames.map((f) => [f.id, f]));
      const origin = new Map<string, string | undefined>();
      for (const records of read.values())
        for (const r of records) origin.set(`${r.topic}:${r.partition}:${r.offset}`, r.headers[FUZZ_ID]);
      const problems: string[] = [];
      for (const d of deadLetters) {
        const id = d.headers[FUZZ_ID];
        const processor = d.headers[deadLetterHeader.processor]!;
        const frame = id === undefined ? undefined : byId.get(id);
        const expected = frame?.deadLetters.get(processor);
        const at = `${d.headers[deadLetterHeader.topic]}:${d.headers[deadLetterHeader.partition]}:${d.headers[deadLetterHeader.offset]}`;
        if (!frame || !expected) {
          problems.push(
            `unexpected dead letter ${id ?? '(no fuzz-id)'} from ${processor}: ${d.headers[deadLetterHeader.errorMessage]}`,
          );
          continue;
        }
        const seen = {
          stage: d.headers[deadLetterHeader.stage],
          code: d.headers[deadLetterHeader.errorCode],
          reason: d.headers[deadLetterHeader.errorReason],
        };
        if (seen.stage !== expected.stage || seen.code !== expected.code || seen.reason !== expected.reason) {
          problems.push(
            `${id} from ${processor}: ${JSON.stringify(seen)}, expected ${JSON.stringify(expected)}: ${d.headers[deadLetterHeader.errorMessage]}`,
          );
        }
        const from = processor === 'router' ? eventsTopic : frame.route;
        if (d.headers[deadLetterHeader.topic] !== from || origin.get(at) !== id)
          problems.push(`${id} from ${processor}: provenance ${at} does not hold it`);
        if (d.size !== (frame.value?.length ?? -1))
          problems.push(`${id} from ${processor}: value of ${d.size} bytes, sent ${frame.value?.length ?? -1}`);
      }
      expect(problems).toEqual([]);
      const expectedDead = bad.flatMap((f) => [...f.deadLetters.keys()].map((p) => `${f.id} @ ${p}`)).sort();
      expect(deadLetters.map((d) => `${d.headers[FUZZ_ID]} @ ${d.headers[deadLetterHeader.processor]}`).sort()).toEqual(
        expectedDead,
      );
      expect(down(), 'members that exited').toEqual([]);

      const count = (items: string[]): string =>
        Object.entries(items.reduce<Record<string, number>>((acc, k) => ((acc[k] = (acc[k] ?? 0) + 1), acc), {}))
          .sort()
          .map(([k, v]) => `${k}=${v}`)
          .join(' ');
      console.log(
        `fuzz ${application}: ${frames.length} frames (${goodFrames.length} good; bad: ${count(bad.map((f) => f.kind))}) → ${deadLetters.length} dead letters ` +
          `(${count(deadLetters.map((d) => d.headers[deadLetterHeader.errorReason] ?? d.headers[deadLetterHeader.errorCode]!))}); ` +
          `${members.length} members up throughout (started in ${(startedIn / 1000).toFixed(1)} s); ${((Date.now() - started) / 1000).toFixed(1)} s`,
      );
    } finally {
      codes = await stopMembers(members);
      await admin.disconnect();
      const server = openClickHouse(config, { database: null });
      await server.command({ query: `DROP DATABASE IF EXISTS ${database}` }).finally(() => server.close());
    }
    // SIGTERM at the end: each member finishes, commits and leaves cleanly.
    expect(codes, `exit codes of ${names.join(', ')}`).toEqual(names.map(() => 0));
  }, 240_000);
});
