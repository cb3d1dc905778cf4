/**
 * The topology test driver: runs a topology's processors in memory, with no broker, no registry and no Redis,
 * through exactly the batch code the Kafka engine runs. Pipe records in, move wall-clock time, read what came out
 * and what state was kept. Records forwarded to a topic another processor reads flow on, as in a deployment.
 */
import avro from 'avsc';
import { Partitioners } from 'kafkajs';
import { AgentStreamsError, ErrorCode } from '../errors.ts';
import {
  compileWriterChecks,
  decodeBody,
  deserializeError,
  schemaIdOf,
  WIRE_HEADER_BYTES,
  type WriterChecks,
} from '../serde/avro.ts';
import type { SchemaFile } from '../serde/schemas.ts';
import { readerSchemasOf, ResolverCache, type ReaderSchemas } from '../serde/readers.ts';
import type { Topology } from '../topology/topology.ts';
import {
  isTopic,
  nameOf,
  outputOf,
  type Outgoing,
  type RecordTypeMap,
  type Store,
  type Table,
  type Topic,
  type ValueOf,
} from '../topology/handles.ts';
import {
  prepareBatch,
  runBatch,
  runPunctuation,
  stateKey,
  type BatchResult,
  type Codec,
  type StateEntry,
  type TaskScope,
} from '../engine/batch.ts';
import type { ProducedMessage, SourceRecord } from '../engine/dead-letter.ts';
import { configSchema } from '../config/schema.ts';

export interface TestRecord<V = unknown> {
  key: string | null;
  value: V;
  recordType?: string;
  timestamp?: number;
  headers?: Record<string, string>;
}

export interface OutputRecord<V = unknown> {
  topic: string;
  partition: number;
  key: string | null;
  value: V;
  /** `undefined` for records that are not Avro (dead letters of undecodable input keep their raw bytes). */
  recordType: string | undefined;
  raw: Buffer | null;
  headers: Record<string, string>;
}

export class LocalCodec implements Codec {
  private readonly byId = new Map<number, { type: avro.Type; name: string; checks: WriterChecks }>();
  private readonly byName = new Map<string, number>();
  /** Writer → reader resolvers of the processors' reader schemas, as the engine's serde keeps them. */
  readonly resolvers = new ResolverCache();

  constructor(schemas: SchemaFile[]) {
    schemas.forEach((s, i) => {
      const type = avro.Type.forSchema(s.schema);
      this.byId.set(i + 1, { type, name: s.subject, checks: compileWriterChecks(s.schema) });
      this.byName.set(s.subject, i + 1);
    });
  }

  decode(buffer: Buffer | null, readers?: ReaderSchemas) {
    const id = schemaIdOf(buffer);
    const entry = this.byId.get(id);
    if (!entry)
      throw deserializeError('unknown-schema', `Schema id ${id} is not known to the test driver.`, { schemaId: id });
    // The same bounded, range-checked decoding (and writer → reader resolution) as the engine's serde.
    const reader = readers?.byWriterType.get(entry.name);
    const resolution = reader ? this.resolvers.resolve(reader, id, entry.type) : undefined;
    const value = decodeBody(entry.type, entry.checks, buffer!.subarray(WIRE_HEADER_BYTES), id, entry.name, resolution);
    return { schemaId: id, recordType: reader ? reader.recordType : entry.name, value };
  }

  recordTypeOf(buffer: Buffer | null): string {
    const entry = this.byId.get(schemaIdOf(buffer));
    if (!entry) throw deserializeError('unknown-schema', 'Schema id is not known to the test driver.');
    return entry.name;
  }

  encode(recordType: string, value: unknown): Buffer {
    const id = this.byName.get(recordType);
    if (id === undefined)
      throw new AgentStreamsError(ErrorCode.SERIALIZE, `The test driver has no schema for ${recordType}.`);
    const { type } = this.byId.get(id)!;
    const paths: string[] = [];
    if (!type.isValid(value, { errorHook: (path) => paths.push(path.join('.') || '(root)') })) {
      throw new AgentStreamsError(
        ErrorCode.SERIALIZE,
        `Value does not match ${recordType}; invalid at: ${paths.join(', ')}.`,
      );
    }
    const body = type.toBuffer(value);
    const out = Buffer.alloc(WIRE_HEADER_BYTES + body.length);
    out.writeInt32BE(id, 1);
    body.copy(out, WIRE_HEADER_BYTES);
    return out;
  }
}

interface DriverTask {
  state: Map<string, StateEntry>;
  streamTime: number;
}

export class TopologyTestDriver {
  readonly codec: LocalCodec;
  private readonly outputs: OutputRecord[] = [];
  private readonly tasks = new Map<string, DriverTask>();
  private readonly partitioner = Partitioners.DefaultPartitioner();
  private offsets = new Map<string, number>();
  private readonly tables = new Map<string, Map<string, unknown>>();
  wallClock: number;

  constructor(
    readonly topology: Topology,
    schemas: SchemaFile[],
    options: {
      /** Epoch ms the driver's wall clock starts at; `advanceWallClock` moves it. */
      wallClock?: number;
      /**
       * `records.maxEventTimeAheadMs` for this driver: a record whose event time is further ahead of the driver's wall
       * clock is dead-lettered, as the engine does. Defaults to the setting's default when a wall clock is seeded, and
       * to 0 (off) when not: an unseeded clock stands at 1970 and would refuse every record.
       */
      maxEventTimeAheadMs?: number;
      services?: Record<string, (requests: ReadonlyMap<string, unknown>) => Map<string, unknown>>;
    } = {},
  ) {
    this.codec = new LocalCodec(schemas);
    this.wallClock = options.wallClock ?? 0;
    this.services = options.services ?? {};
    const maxAheadMs =
      options.maxEventTimeAheadMs ??
      (options.wallClock === undefined ? 0 : (configSchema.records.maxEventTimeAheadMs.default ?? 0));
    this.eventTimeBound = { maxAheadMs, wallClock: () => this.wallClock };
  }

  private readonly eventTimeBound: { maxAheadMs: number; wallClock: () => number };

  /** Enrichment services, synchronous here: tests answer requests directly (or through a fake). */
  private readonly services: Record<string, (requests: ReadonlyMap<string, unknown>) => Map<string, unknown>>;

  private partitionsOf(topic: string): number {
    return this.topology.topics[topic]?.partitions ?? 1;
  }

  private partitionFor(topic: string, key: Buffer | string | null): number {
    const partitions = this.partitionsOf(topic);
    return this.partitioner({
      topic,
      partitionMetadata: Array.from({ length: partitions }, (_, i) => ({
        partitionId: i,
        leader: 0,
        partitionErrorCode: 0,
        replicas: [0],
        isr: [0],
      })),
      message: { key: key ?? null, value: null },
    });
  }

  private readonly codecs = new Map<string, Codec>();

  /** The codec a processor decodes with: its reader schemas, if it declares any, over the shared writer schemas. */
  private codecOf(processor: string): Codec {
    let codec = this.codecs.get(processor);
    if (!codec) {
      const readers = readerSchemasOf(processor, this.topology.processors[processor]!.readerSchemas);
      const local = this.codec;
      codec = readers
        ? {
            decode: (buffer) => local.decode(buffer, readers),
            recordTypeOf: (buffer) => local.recordTypeOf(buffer),
            encode: (type, value) => local.encode(type, value),
          }
        : local;
      this.codecs.set(processor, codec);
    }
    return codec;
  }

  private task(processor: string, partition: number): DriverTask {
    const id = `${processor}/${partition}`;
    let task = this.tasks.get(id);
    if (!task) this.tasks.set(id, (task = { state: new Map(), streamTime: Number.NEGATIVE_INFINITY }));
    return task;
  }

  /** Replaces a shared table's rows (what `agent-streams table load` does in a deployment). */
  setTable<T>(table: Table<T> | string, rows: T[]): void {
    const name = nameOf(table);
    const spec = this.topology.tables?.[name];
    if (!spec) throw new AgentStreamsError(ErrorCode.USAGE, `Topology has no table "${name}".`);
    this.tables.set(name, new Map(rows.map((row) => [String((row as Record<string, unknown>)[spec.keyField]), row])));
  }

  /**
   * Encodes and pipes one record into `topic`; everything downstream runs before this returns. With a topic
   * handle the value is type-checked and the record type is the handle's (name it when the topic holds several).
   */
  pipe<M extends RecordTypeMap>(topic: Topic<M>, record: Outgoing<M>): void;
  pipe<V>(topic: string, record: TestRecord<V>): void;
  pipe(topic: Topic | string, record: TestRecord): void {
    const out = isTopic(topic) ? outputOf(topic, record) : { ...record, topic };
    if (!out.recordType)
      throw new AgentStreamsError(ErrorCode.USAGE, 'pipe() needs a recordType to encode the value with.');
    const value = this.codec.encode(out.recordType, out.value);
    this.pipeRaw(out.topic, {
      key: out.key,
      value,
      timestamp: out.timestamp ?? this.wallClock,
      headers: out.headers ?? {},
    });
  }

  /** Pipes bytes as they are: for testing what happens to records that are not valid Avro. */
  pipeRaw(
    topic: string,
    record: { key: string | null; value: Buffer | null; timestamp?: number; headers?: Record<string, string> },
  ): void {
    this.deliver({
      topic,
      key: record.key,
      value: record.value,
      timestamp: String(record.timestamp ?? this.wallClock),
      headers: record.headers ?? {},
    });
  }

  private deliver(message: ProducedMessage): void {
    const partition = message.partition ?? this.partitionFor(message.topic, message.key);
    const offsetKey = `${message.topic}/${partition}`;
    const offset = this.offsets.get(offsetKey) ?? 0;
    this.offsets.set(offsetKey, offset + 1);
    const key = message.key === null ? null : Buffer.isBuffer(message.key) ? message.key : Buffer.from(message.key);
    const headers = Object.fromEntries(Object.entries(message.headers ?? {}).map(([k, v]) => [k, v.toString()]));
    this.outputs.push({
      topic: message.topic,
      partition,
      key: key?.toString('utf8') ?? null,
      value: undefined,
      recordType: undefined,
      raw: message.value,
      headers,
    });
    const source: SourceRecord = {
      topic: message.topic,
      partition,
      offset: String(offset),
      timestamp: message.timestamp ?? String(this.wallClock),
      key,
      value: message.value,
      headers,
    };
    for (const [name, spec] of Object.entries(this.topology.processors)) {
      if (!spec.inputs.includes(message.topic)) continue;
      const scope: TaskScope = {
        topology: this.topology,
        processor: name,
        spec,
        partition,
        codec: this.codecOf(name),
        tables: this.tables,
        eventTimeBound: this.eventTimeBound,
      };
      const task = this.task(name, partition);
      const prepared = prepareBatch(scope, [source]);
      let answers: Map<string, unknown> | undefined;
      if (spec.kind === 'process' && spec.enrich && prepared.requests.size > 0) {
        const service = this.services[spec.enrich.service];
        if (!service)
          throw new AgentStreamsError(
            ErrorCode.USAGE,
            `The test driver has no service "${spec.enrich.service}": pass it in options.services.`,
          );
        answers = service(prepared.requests);
      }
      this.apply(task, runBatch(scope, prepared, task.state, task.streamTime, { answers }));
    }
  }

  private apply(task: DriverTask, result: BatchResult): void {
    for (const [key, entry] of result.changes) {
      if (entry === null) task.state.delete(key);
      else task.state.set(key, entry);
    }
    task.streamTime = result.streamTime;
    for (const message of result.messages) this.deliver(message);
  }

  /** Moves the wall clock and runs wall-clock punctuation (window closes for idle keys) where declared. */
  advanceWallClock(ms: number): void {
    this.wallClock += ms;
    for (const [id, task] of this.tasks) {
      const [name, partition] = id.split('/') as [string, string];
      const spec = this.topology.processors[name]!;
      if (spec.kind !== 'windowed' || !spec.wallClockCloseIntervalMs) continue;
      const scope: TaskScope = {
        topology: this.topology,
        processor: name,
        spec,
        partition: Number(partition),
        codec: this.codec,
      };
      this.apply(task, runPunctuation(scope, task.state, task.streamTime, this.wallClock));
    }
  }

  /** Everything written to `topic` so far, decoded where it is Avro; typed by the topic's handle. */
  readOutput<M extends RecordTypeMap>(topic: Topic<M>): Array<OutputRecord<ValueOf<M>>>;
  readOutput<V = unknown>(topic: string): Array<OutputRecord<V>>;
  readOutput<V = unknown>(topic: Topic | string): Array<OutputRecord<V>> {
    const name = isTopic(topic) ? topic.name : topic;
    return this.outputs
      .filter((o) => o.topic === name)
      .map((o) => {
        try {
          const decoded = this.codec.decode(o.raw);
          return { ...o, value: decoded.value as V, recordType: decoded.recordType };
        } catch {
          return { ...o, value: undefined as V };
        }
      });
  }

  readDeadLetters(): OutputRecord[] {
    return this.readOutput(this.topology.deadLetterTopic);
  }

  /** Every key of a processor's store: `partition/store:key` → JSON of the value, as the engine keeps it in Redis. */
  storeContents(processor: string, handle: Store | string): Map<string, string> {
    const store = nameOf(handle);
    const out = new Map<string, string>();
    for (const [id, task] of this.tasks) {
      const [name, partition] = id.split('/');
      if (name !== processor) continue;
      for (const [key, entry] of task.state)
        if (key.startsWith(`${store}:`)) out.set(`${partition}/${key}`, JSON.stringify(entry.v));
    }
    return out;
  }

  /** A key's value in a processor's store, on whichever partition holds it. */
  stateOf<S>(processor: string, store: Store<S>, key: string): S | undefined;
  stateOf<S = unknown>(processor: string, store: string, key: string): S | undefined;
  stateOf<S = unknown>(processor: string, handle: Store<S> | string, key: string): S | undefined {
    const store = nameOf(handle);
    for (const [id, task] of this.tasks) {
      if (!id.startsWith(`${processor}/`)) continue;
      const entry = task.state.get(stateKey(store, key));
      if (entry) return entry.v as S;
    }
    return undefined;
  }
}
