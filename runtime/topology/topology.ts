/**
 * Topologies are declarations: the topics an application owns, and its processors, each reading input topics and
 * writing declared outputs. One topology file runs as many processes as you like; each processor is a consumer
 * group (`<application>.<processor>`), each process running it a member.
 */
import { AgentStreamsError, ErrorCode } from '../errors.ts';
import { compileReaderSchemas, type ReaderSchemaSource } from '../serde/readers.ts';
import type { WindowedAggregation, WindowResult } from '../windows/index.ts';
import {
  isTopic,
  type InputValueOf,
  type RecordOf,
  type RecordTypeMap,
  type Store,
  type Table,
  type Topic,
} from './handles.ts';
import type { Forward, ProcessorContext, StreamRecord } from './processor.ts';
import type { ServiceFactory, SinkDeclaration } from './services.ts';

/** Kafka's `cleanup.policy` values. */
export const cleanupPolicies = ['delete', 'compact', 'compact,delete'] as const;
export type CleanupPolicy = (typeof cleanupPolicies)[number];

export interface TopicSpec {
  partitions: number;
  /** Log compaction (changelogs, tables); default delete. Shorthand for `cleanupPolicy: 'compact'`. */
  compact?: boolean;
  /** Copies of each partition; default the topology's `replicationFactor`, else the broker's default. */
  replicationFactor?: number;
  /**
   * `min.insync.replicas`: copies an acks=all write needs. Default, when a replication factor is known: 2 from
   * a factor of 3 up (one broker may be down), else 1; otherwise the broker's default.
   */
  minInsyncReplicas?: number;
  /** `retention.ms`; -1 keeps records forever. Default: the broker's. */
  retentionMs?: number;
  cleanupPolicy?: CleanupPolicy;
}

/** Settings of a topic the runtime names itself (dead letters, late records). */
export type RuntimeTopicSpec = Partial<
  Pick<TopicSpec, 'partitions' | 'replicationFactor' | 'minInsyncReplicas' | 'retentionMs'>
>;

export interface BaseProcessorSpec {
  inputs: string[];
  /**
   * Input topic → the record types the processor's handle for it declares. A record of another type is
   * dead-lettered before the processor sees it, which is what keeps a typed `StreamRecord<In>` true. Absent for
   * inputs given by name (untyped): every type passes.
   */
  inputTypes?: Record<string, readonly string[]>;
  /** Output topic → the record types written to it. Everything forwarded must be declared here. */
  outputs?: Record<string, string[]>;
  /** Event time of a decoded record; default: the value's `eventTime` field, else the Kafka timestamp. */
  timestamp?(value: unknown, kafkaTimestamp: number): number;
  /**
   * The schema version this processor was built against, per record type (full name) it reads: a schema object or a
   * `.avsc` path. Records written with another version are resolved to it (defaults filled in, dropped fields
   * skipped); types not listed are decoded as written. Loaded and checked at start. See docs/schemas.md.
   */
  readerSchemas?: Record<string, ReaderSchemaSource>;
}

export interface ProcessSpec extends BaseProcessorSpec {
  kind: 'process';
  stores?: string[];
  /** Shared tables read through `ctx.table(name)`. */
  tables?: string[];
  /**
   * Work the runtime does for a record before `process` sees it (an LLM analysis, say). `request` decides, purely,
   * what to ask; the runtime asks the named service for the whole batch at once; `process` reads the answer with
   * `ctx.answer()`. The processor itself still does no I/O.
   */
  enrich?: {
    service: string;
    request(record: StreamRecord, ctx: Pick<ProcessorContext, 'table' | 'partition'>): unknown;
  };
  // A method, not a property: a processor of `StreamRecord<PriceTick>` is assignable to this erased spec. The
  // runtime keeps that honest by checking each record's type against its input handle (`inputTypes`).
  process(record: StreamRecord, ctx: ProcessorContext): void;
}

export interface WindowResultContext {
  readonly key: string;
  readonly partition: number;
  readonly streamTime: number;
  forward: Forward;
}

export interface WindowedSpec<V = unknown, A = unknown> extends BaseProcessorSpec {
  kind: 'windowed';
  store: string;
  aggregation: WindowedAggregation<V, A>;
  /** `update`: every change of a window; `close`: once, when the window closes (suppression). */
  emit: 'update' | 'close';
  // Methods, not properties: a typed spec (`WindowedSpec<Finding, DigestAccumulator>`) is assignable to the erased
  // `ProcessorSpec` without a cast.
  value?(record: StreamRecord): V;
  /**
   * A window's result. `final`: the window has closed. `amended`: a late record changed a closed window kept for
   * amendments (`amendWithin`), and this final result replaces the one emitted before.
   */
  onResult(result: WindowResult<A> & { final: boolean; amended?: boolean }, ctx: WindowResultContext): void;
  /** Also close windows by wall clock, so idle keys still emit; interval of the check in ms. */
  wallClockCloseIntervalMs?: number;
}

export interface RouterSpec extends BaseProcessorSpec {
  kind: 'router';
  /** Record type → topic. Records pass through as bytes: the router never decodes a body. */
  routes: Record<string, string>;
}

export type ProcessorSpec = ProcessSpec | WindowedSpec<unknown, unknown> | RouterSpec;

/** An input: a topic handle (typed) or, in the low-level form, a topic name (records are `StreamRecord<unknown>`). */
export type Input = Topic | string;
/** Outputs: topic handles, or the low-level form `{ topicName: [recordType, …] }`. */
export type Outputs = readonly Topic[] | Record<string, string[]>;

type Wiring = Pick<BaseProcessorSpec, 'inputs' | 'inputTypes' | 'outputs'>;
export type CommonOptions = Omit<BaseProcessorSpec, 'inputs' | 'inputTypes' | 'outputs' | 'timestamp'>;

function wiring(what: string, inputs: readonly Input[], outputs: Outputs | undefined): Wiring {
  if (!Array.isArray(inputs)) throw invalid(`${what}: inputs must be a list of topics, e.g. inputs: [trades]`);
  const names: string[] = [];
  const inputTypes: Record<string, readonly string[]> = {};
  for (const input of inputs) {
    if (typeof input === 'string') names.push(input);
    else if (isTopic(input)) {
      names.push(input.name);
      inputTypes[input.name] = [...new Set([...(inputTypes[input.name] ?? []), ...input.recordTypes])];
    } else
      throw invalid(
        `${what}: an input is ${JSON.stringify(input)}; give a topic handle (topic<T>(name, recordType)) or a topic name`,
      );
  }
  let out: Record<string, string[]> | undefined;
  if (Array.isArray(outputs)) {
    out = {};
    for (const output of outputs as readonly unknown[]) {
      if (!isTopic(output))
        throw invalid(
          `${what}: an output is ${JSON.stringify(output)}; give a topic handle (topic<T>(name, recordType))`,
        );
      out[output.name] = [...new Set([...(out[output.name] ?? []), ...output.recordTypes])];
    }
  } else if (outputs !== undefined) out = outputs as Record<string, string[]>;
  return {
    inputs: names,
    ...(Object.keys(inputTypes).length > 0 ? { inputTypes } : {}),
    ...(out ? { outputs: out } : {}),
  };
}

function names(
  what: string,
  kind: 'store' | 'table',
  list: readonly (Store | Table | string)[] | undefined,
): string[] | undefined {
  if (list === undefined) return undefined;
  return list.map((item) => {
    if (typeof item === 'string') return item;
    if (typeof item === 'object' && item !== null && item.kind === kind) return item.name;
    throw invalid(`${what}: ${JSON.stringify(item)} is not a ${kind}; give ${kind}<T>(name) or a ${kind} name`);
  });
}

export interface ProcessOptions<H extends Input> extends CommonOptions {
  inputs: readonly H[];
  outputs?: Outputs;
  stores?: readonly (Store | string)[];
  /** Shared tables read through `ctx.table(handle)`. */
  tables?: readonly (Table | string)[];
  timestamp?: (value: InputValueOf<H>, kafkaTimestamp: number) => number;
  /** See `ProcessSpec.enrich`. */
  enrich?: {
    service: string;
    request: (record: RecordOf<H>, ctx: Pick<ProcessorContext, 'table' | 'partition'>) => unknown;
  };
  process: (record: RecordOf<H>, ctx: ProcessorContext) => void;
}

/**
 * Declares a processor. Its inputs type the records `process` receives; its outputs, stores and tables are the
 * handles it forwards to and reads (`ctx.forward(handle, …)`, `ctx.store(handle)`), so nothing is named twice.
 */
export function processor<H extends Input>(options: ProcessOptions<H>): ProcessorSpec {
  const { inputs, outputs, stores, tables, timestamp, enrich, process, ...common } = options;
  const spec: ProcessSpec = {
    kind: 'process',
    ...common,
    ...wiring('processor', inputs, outputs),
    ...(stores ? { stores: names('processor', 'store', stores) } : {}),
    ...(tables ? { tables: names('processor', 'table', tables) } : {}),
    ...(timestamp ? { timestamp } : {}),
    ...(enrich ? { enrich } : {}),
    process,
  };
  return spec;
}

export interface WindowedOptions<H extends Input, V, A> extends CommonOptions {
  inputs: readonly H[];
  outputs?: Outputs;
  store: Store | string;
  aggregation: WindowedAggregation<V, A>;
  /** `update`: every change of a window; `close`: once, when the window closes (suppression). */
  emit: 'update' | 'close';
  timestamp?: (value: InputValueOf<H>, kafkaTimestamp: number) => number;
  /** The value folded into the windows; default the record's value. */
  value?: (record: RecordOf<H>) => V;
  onResult: (result: WindowResult<A> & { final: boolean; amended?: boolean }, ctx: WindowResultContext) => void;
  wallClockCloseIntervalMs?: number;
}

/**
 * Declares a windowed aggregation. The input handles type the values folded in (or `value` maps records to
 * them), the aggregation types the accumulator, and `onResult` receives it typed.
 */
export function windowed<H extends Input, V, A>(
  options: WindowedOptions<H, V, A> & { value: (record: RecordOf<H>) => V },
): ProcessorSpec;
export function windowed<H extends Input, A>(
  options: WindowedOptions<H, InputValueOf<H>, A> & { value?: undefined },
): ProcessorSpec;
export function windowed<V, A>(options: WindowedOptions<Input, V, A>): ProcessorSpec {
  const { inputs, outputs, store, timestamp, value, ...rest } = options;
  const [storeName] = names('windowed', 'store', [store])!;
  const spec: WindowedSpec<V, A> = {
    kind: 'windowed',
    ...rest,
    ...wiring('windowed', inputs, outputs),
    store: storeName!,
    ...(timestamp ? { timestamp } : {}),
    ...(value ? { value } : {}),
  };
  return spec;
}

/** Record type → the topic its records go to; each topic's handle must hold that record type. */
export type Routes<M extends RecordTypeMap> = { [K in keyof M & string]?: Topic<{ [recordType: string]: M[K] }> };

/**
 * Declares a router: records pass through as bytes to the topic of their record type. With handles, the outputs
 * follow from the routes; the low-level form names routes and outputs.
 */
export function router<M extends RecordTypeMap>(
  options: CommonOptions & { inputs: readonly Topic<M>[]; routes: Routes<M> },
): ProcessorSpec;
export function router(options: Omit<RouterSpec, 'kind'>): ProcessorSpec;
export function router(
  options: CommonOptions & {
    inputs: readonly Input[];
    routes: Record<string, Topic | string | undefined>;
    outputs?: Record<string, string[]>;
  },
): ProcessorSpec {
  const { inputs, routes, outputs, ...common } = options;
  const byName: Record<string, string> = {};
  const handles: Topic[] = [];
  for (const [recordType, target] of Object.entries(routes ?? {})) {
    if (target === undefined) continue;
    if (typeof target === 'string') byName[recordType] = target;
    else if (isTopic(target)) {
      if (!target.recordTypes.includes(recordType))
        throw invalid(
          `router: routes ${recordType} to "${target.name}", whose handle holds only ${target.recordTypes.join(', ')}`,
        );
      byName[recordType] = target.name;
      handles.push(topicOfOne(target, recordType));
    } else
      throw invalid(
        `router: the route of ${recordType} is ${JSON.stringify(target)}; give a topic handle or a topic name`,
      );
  }
  const wired = wiring('router', inputs, handles.length > 0 ? handles : outputs);
  if (handles.length > 0 && outputs !== undefined)
    throw invalid('router: with topic handles as routes the outputs follow from them; remove outputs');
  return { kind: 'router', ...common, ...wired, routes: byName };
}

/** The handle narrowed to one of its record types: what a router writes there. */
function topicOfOne(target: Topic, recordType: string): Topic {
  return { kind: 'topic', name: target.name, recordTypes: [recordType] };
}

/** A shared table: records of one Avro type by key, kept in Redis and loaded by `agent-streams table load`. */
export interface TableSpec {
  recordType: string;
  /** Field of the record that is its key. */
  keyField: string;
  /**
   * Rules a row must follow that its schema cannot express (a range, say): the problems of a row that already
   * matches the schema, none if it is valid. `table load` refuses a file with any row that has problems.
   */
  validate?(row: unknown): string[];
}

export interface TopologySpec {
  application: string;
  topics: Record<string, TopicSpec>;
  /** Replication factor of every topic that does not declare one: changelogs, dead letters and late records too. */
  replicationFactor?: number;
  /** The dead-letter topic; default partitions: the most of any processor's inputs; retention 30 days. */
  deadLetters?: RuntimeTopicSpec;
  /** The late-record topic; same defaults as `deadLetters`. */
  lateRecords?: RuntimeTopicSpec;
  tables?: Record<string, TableSpec>;
  processors: Record<string, ProcessorSpec>;
  /** The enrichment services its processors ask by name (`enrich.service`), built per member by `agent-streams run`. */
  services?: Record<string, ServiceFactory>;
  /** What `agent-streams sink` writes: topics and the ClickHouse rows their record types become. */
  sink?: SinkDeclaration;
}

export interface Topology extends TopologySpec {
  deadLetterTopic: string;
  lateTopic: string;
  groupId(processor: string): string;
  /** Redis hash holding a table's rows as JSON by key: a cache of the table's topic. */
  tableKey(table: string): string;
  /** Compacted topic holding a table's rows by key: the table's source of truth (tombstones delete rows). */
  tableTopic(table: string): string;
  changelogTopic(processor: string): string;
  storesOf(processor: string): string[];
}

/** The state stores a processor keeps. */
export function storesOfSpec(spec: ProcessorSpec): string[] {
  return spec.kind === 'process' ? (spec.stores ?? []) : spec.kind === 'windowed' ? [spec.store] : [];
}

/** The shared tables a processor reads. */
export function tablesOfSpec(spec: ProcessorSpec): string[] {
  return spec.kind === 'process' ? (spec.tables ?? []) : [];
}

const namePattern = /^[a-z][a-z0-9-]*$/;
const topicPattern = /^[A-Za-z0-9._-]+$/;

const maxReplicationFactor = 32_767; // an int16 on the wire

/** What is wrong with a topic's settings (`what` names it in the messages); none if they are valid. */
export function topicSpecProblems(what: string, t: Partial<TopicSpec>, defaultReplicationFactor?: number): string[] {
  const problems: string[] = [];
  if (t.partitions !== undefined && (!Number.isInteger(t.partitions) || t.partitions < 1 || t.partitions > 1000))
    problems.push(`${what} needs 1–1000 partitions, got ${t.partitions}`);
  if (
    t.replicationFactor !== undefined &&
    (!Number.isInteger(t.replicationFactor) || t.replicationFactor < 1 || t.replicationFactor > maxReplicationFactor)
  ) {
    problems.push(`${what} needs a replication factor of at least 1 (an integer), got ${t.replicationFactor}`);
  }
  if (t.minInsyncReplicas !== undefined) {
    const rf = t.replicationFactor ?? defaultReplicationFactor;
    if (!Number.isInteger(t.minInsyncReplicas) || t.minInsyncReplicas < 1)
      problems.push(`${what} needs minInsyncReplicas of at least 1 (an integer), got ${t.minInsyncReplicas}`);
    else if (rf !== undefined && Number.isInteger(rf) && t.minInsyncReplicas > rf) {
      problems.push(
        `${what} has minInsyncReplicas ${t.minInsyncReplicas} above its replication factor ${rf}: no acks=all write could ever succeed`,
      );
    }
  }
  if (
    t.retentionMs !== undefined &&
    !(Number.isSafeInteger(t.retentionMs) && (t.retentionMs >= 1 || t.retentionMs === -1))
  ) {
    problems.push(`${what} needs retentionMs of at least 1 ms, or -1 to keep records forever, got ${t.retentionMs}`);
  }
  if (t.cleanupPolicy !== undefined && !(cleanupPolicies as readonly string[]).includes(t.cleanupPolicy)) {
    problems.push(
      `${what} has cleanup policy "${t.cleanupPolicy}"; use one of ${cleanupPolicies.map((c) => `'${c}'`).join(', ')}`,
    );
  }
  if (t.compact === true && t.cleanupPolicy === 'delete')
    problems.push(`${what} says compact: true and cleanupPolicy: 'delete'; keep one`);
  return problems;
}

function invalid(message: string): AgentStreamsError {
  return new AgentStreamsError(ErrorCode.TOPOLOGY_INVALID, message);
}

/** Validates a topology declaration once, at start-up, and names each problem. */
export function defineTopology(spec: TopologySpec): Topology {
  const problems: string[] = [];
  if (!namePattern.test(spec.application)) problems.push(`application "${spec.application}" must match ${namePattern}`);
  const deadLetterTopic = `${spec.application}.dead-letters`;
  const lateTopic = `${spec.application}.late-records`;
  const topics = new Set(Object.keys(spec.topics));
  const rf = spec.replicationFactor;
  if (rf !== undefined && (!Number.isInteger(rf) || rf < 1 || rf > maxReplicationFactor))
    problems.push(`the topology's replicationFactor must be an integer of at least 1, got ${rf}`);
  for (const [topic, t] of Object.entries(spec.topics)) {
    if (!topicPattern.test(topic)) problems.push(`topic "${topic}" has characters Kafka does not allow`);
    if (!Number.isInteger(t.partitions) || t.partitions < 1 || t.partitions > 1000)
      problems.push(`topic "${topic}" needs 1–1000 partitions, got ${t.partitions}`);
    problems.push(...topicSpecProblems(`topic "${topic}"`, { ...t, partitions: undefined }, rf));
  }
  problems.push(
    ...topicSpecProblems('deadLetters', spec.deadLetters ?? {}, rf),
    ...topicSpecProblems('lateRecords', spec.lateRecords ?? {}, rf),
  );
  const known = (topic: string): boolean => topics.has(topic) || topic === deadLetterTopic || topic === lateTopic;
  const writtenTo = new Map<string, Set<string>>();
  for (const p of Object.values(spec.processors)) {
    for (const [topic, types] of Object.entries(p.outputs ?? {}))
      for (const type of types) writtenTo.set(topic, (writtenTo.get(topic) ?? new Set()).add(type));
  }
  for (const [name, p] of Object.entries(spec.processors)) {
    if (!namePattern.test(name)) problems.push(`processor "${name}" must match ${namePattern}`);
    if (p.inputs.length === 0) problems.push(`processor "${name}" has no inputs`);
    for (const input of p.inputs)
      if (!known(input)) problems.push(`processor "${name}" reads unknown topic "${input}"; declare it under topics`);
    for (const output of Object.keys(p.outputs ?? {}))
      if (!known(output))
        problems.push(`processor "${name}" writes unknown topic "${output}"; declare it under topics`);
    const counts = new Set(p.inputs.map((input) => spec.topics[input]?.partitions));
    if (counts.size > 1)
      problems.push(
        `processor "${name}" reads ${p.inputs.join(', ')} which have different partition counts; co-partitioned inputs need the same count`,
      );
    if (p.kind === 'router') {
      for (const [type, topic] of Object.entries(p.routes)) {
        if (!(p.outputs?.[topic] ?? []).includes(type))
          problems.push(`router "${name}" routes ${type} to ${topic} but does not declare it in outputs`);
      }
    }
    if (p.kind === 'process') {
      for (const table of p.tables ?? [])
        if (!spec.tables?.[table])
          problems.push(`processor "${name}" reads table "${table}", which the topology does not declare under tables`);
    }
    for (const store of storesOfSpec(p))
      if (!namePattern.test(store)) problems.push(`processor "${name}" store "${store}" must match ${namePattern}`);
    // A typed input is a promise about what arrives: no processor of this topology may write another type there.
    for (const [input, expected] of Object.entries(p.inputTypes ?? {})) {
      for (const [writer, w] of Object.entries(spec.processors)) {
        const stray = (w.outputs?.[input] ?? []).filter((type) => !expected.includes(type));
        if (stray.length > 0)
          problems.push(
            `processor "${writer}" writes ${stray.join(', ')} to "${input}", but processor "${name}" reads it as ${expected.join(' | ')}; use one topic handle for both`,
          );
      }
    }
    if (p.readerSchemas && p.kind === 'router')
      problems.push(`router "${name}" declares readerSchemas, but a router never decodes a record body; remove them`);
    else if (p.readerSchemas) {
      // The types it can receive: what its typed input handles declare, else what this topology's processors write
      // to the input. An untyped topic fed from outside (producers, connectors) may carry any type.
      const perInput = p.inputs.map(
        (input) => p.inputTypes?.[input] ?? (writtenTo.has(input) ? [...writtenTo.get(input)!] : undefined),
      );
      const receives = perInput.some((types) => types === undefined)
        ? undefined
        : new Set(perInput.flatMap((types) => types ?? []));
      try {
        compileReaderSchemas(name, p.readerSchemas, receives);
      } catch (error) {
        problems.push((error as Error).message);
      }
    }
  }
  for (const topic of spec.sink?.clickhouse?.topics ?? [])
    if (!known(topic)) problems.push(`sink.clickhouse reads unknown topic "${topic}"; declare it under topics`);
  if (problems.length > 0) throw invalid(`Invalid topology "${spec.application}":\n  - ${problems.join('\n  - ')}`);

  return {
    ...spec,
    deadLetterTopic,
    lateTopic,
    groupId: (processor) => `${spec.application}.${processor}`,
    tableKey: (table) => `as:table:{${spec.application}}:${table}`,
    tableTopic: (table) => `${spec.application}.table.${table}`,
    changelogTopic: (processor) => `${spec.application}.${processor}.changelog`,
    storesOf(processor) {
      const p = spec.processors[processor];
      if (!p)
        throw invalid(
          `Topology "${spec.application}" has no processor "${processor}"; it has ${Object.keys(spec.processors).join(', ')}`,
        );
      return storesOfSpec(p);
    },
  };
}

export function processorSpec(topology: Topology, name: string): ProcessorSpec {
  const spec = topology.processors[name];
  if (!spec)
    throw invalid(
      `Topology "${topology.application}" has no processor "${name}"; it has ${Object.keys(topology.processors).join(', ')}`,
    );
  return spec;
}
