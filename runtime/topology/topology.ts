/**
 * Topologies are declarations: the topics an application owns, and its processors, each reading input topics and
 * writing declared outputs. One topology file runs as many processes as you like; each processor is a consumer
 * group (`<application>.<processor>`), each process running it a member.
 */
import { AgentStreamsError, ErrorCode } from '../errors.ts';
import { compileReaderSchemas, type ReaderSchemaSource } from '../serde/readers.ts';
import type { WindowedAggregation, WindowResult } from '../windows/index.ts';
import type { Output, ProcessFunction, ProcessorContext, StreamRecord } from './processor.ts';

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
export type RuntimeTopicSpec = Partial<Pick<TopicSpec, 'partitions' | 'replicationFactor' | 'minInsyncReplicas' | 'retentionMs'>>;

interface BaseProcessorSpec {
  inputs: string[];
  /** Output topic → the record types written to it. Everything forwarded must be declared here. */
  outputs?: Record<string, string[]>;
  /** Event time of a decoded record; default: the value's `eventTime` field, else the Kafka timestamp. */
  timestamp?: (value: unknown, kafkaTimestamp: number) => number;
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
  process: ProcessFunction;
}

export interface WindowResultContext {
  readonly key: string;
  readonly partition: number;
  readonly streamTime: number;
  forward(output: Output): void;
}

export interface WindowedSpec<V = unknown, A = unknown> extends BaseProcessorSpec {
  kind: 'windowed';
  store: string;
  aggregation: WindowedAggregation<V, A>;
  /** `update`: every change of a window; `close`: once, when the window closes (suppression). */
  emit: 'update' | 'close';
  value?: (record: StreamRecord) => V;
  /**
   * A window's result. `final`: the window has closed. `amended`: a late record changed a closed window kept for
   * amendments (`amendWithin`), and this final result replaces the one emitted before.
   */
  onResult: (result: WindowResult<A> & { final: boolean; amended?: boolean }, ctx: WindowResultContext) => void;
  /** Also close windows by wall clock, so idle keys still emit; interval of the check in ms. */
  wallClockCloseIntervalMs?: number;
}

export interface RouterSpec extends BaseProcessorSpec {
  kind: 'router';
  /** Record type → topic. Records pass through as bytes: the router never decodes a body. */
  routes: Record<string, string>;
}

export type ProcessorSpec = ProcessSpec | WindowedSpec<unknown, unknown> | RouterSpec;

/** Declares a windowed aggregation; the types of values and aggregates are checked here and erased after. */
export function windowed<V, A>(spec: Omit<WindowedSpec<V, A>, 'kind'>): ProcessorSpec {
  return { kind: 'windowed', ...spec } as unknown as ProcessorSpec;
}

export function processor(spec: Omit<ProcessSpec, 'kind'>): ProcessorSpec {
  return { kind: 'process', ...spec };
}

export function router(spec: Omit<RouterSpec, 'kind'>): ProcessorSpec {
  return { kind: 'router', ...spec };
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
  if (t.partitions !== undefined && (!Number.isInteger(t.partitions) || t.partitions < 1 || t.partitions > 1000)) problems.push(`${what} needs 1–1000 partitions, got ${t.partitions}`);
  if (t.replicationFactor !== undefined && (!Number.isInteger(t.replicationFactor) || t.replicationFactor < 1 || t.replicationFactor > maxReplicationFactor)) {
    problems.push(`${what} needs a replication factor of at least 1 (an integer), got ${t.replicationFactor}`);
  }
  if (t.minInsyncReplicas !== undefined) {
    const rf = t.replicationFactor ?? defaultReplicationFactor;
    if (!Number.isInteger(t.minInsyncReplicas) || t.minInsyncReplicas < 1) problems.push(`${what} needs minInsyncReplicas of at least 1 (an integer), got ${t.minInsyncReplicas}`);
    else if (rf !== undefined && Number.isInteger(rf) && t.minInsyncReplicas > rf) {
      problems.push(`${what} has minInsyncReplicas ${t.minInsyncReplicas} above its replication factor ${rf}: no acks=all write could ever succeed`);
    }
  }
  if (t.retentionMs !== undefined && !(Number.isSafeInteger(t.retentionMs) && (t.retentionMs >= 1 || t.retentionMs === -1))) {
    problems.push(`${what} needs retentionMs of at least 1 ms, or -1 to keep records forever, got ${t.retentionMs}`);
  }
  if (t.cleanupPolicy !== undefined && !(cleanupPolicies as readonly string[]).includes(t.cleanupPolicy)) {
    problems.push(`${what} has cleanup policy "${t.cleanupPolicy}"; use one of ${cleanupPolicies.map((c) => `'${c}'`).join(', ')}`);
  }
  if (t.compact === true && t.cleanupPolicy === 'delete') problems.push(`${what} says compact: true and cleanupPolicy: 'delete'; keep one`);
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
  if (rf !== undefined && (!Number.isInteger(rf) || rf < 1 || rf > maxReplicationFactor)) problems.push(`the topology's replicationFactor must be an integer of at least 1, got ${rf}`);
  for (const [topic, t] of Object.entries(spec.topics)) {
    if (!topicPattern.test(topic)) problems.push(`topic "${topic}" has characters Kafka does not allow`);
    if (!Number.isInteger(t.partitions) || t.partitions < 1 || t.partitions > 1000) problems.push(`topic "${topic}" needs 1–1000 partitions, got ${t.partitions}`);
    problems.push(...topicSpecProblems(`topic "${topic}"`, { ...t, partitions: undefined }, rf));
  }
  problems.push(...topicSpecProblems('deadLetters', spec.deadLetters ?? {}, rf), ...topicSpecProblems('lateRecords', spec.lateRecords ?? {}, rf));
  const known = (topic: string): boolean => topics.has(topic) || topic === deadLetterTopic || topic === lateTopic;
  const writtenTo = new Map<string, Set<string>>();
  for (const p of Object.values(spec.processors)) {
    for (const [topic, types] of Object.entries(p.outputs ?? {})) for (const type of types) writtenTo.set(topic, (writtenTo.get(topic) ?? new Set()).add(type));
  }
  for (const [name, p] of Object.entries(spec.processors)) {
    if (!namePattern.test(name)) problems.push(`processor "${name}" must match ${namePattern}`);
    if (p.inputs.length === 0) problems.push(`processor "${name}" has no inputs`);
    for (const input of p.inputs) if (!known(input)) problems.push(`processor "${name}" reads unknown topic "${input}"; declare it under topics`);
    for (const output of Object.keys(p.outputs ?? {})) if (!known(output)) problems.push(`processor "${name}" writes unknown topic "${output}"; declare it under topics`);
    const counts = new Set(p.inputs.map((input) => spec.topics[input]?.partitions));
    if (counts.size > 1) problems.push(`processor "${name}" reads ${p.inputs.join(', ')} which have different partition counts; co-partitioned inputs need the same count`);
    if (p.kind === 'router') {
      for (const [type, topic] of Object.entries(p.routes)) {
        if (!(p.outputs?.[topic] ?? []).includes(type)) problems.push(`router "${name}" routes ${type} to ${topic} but does not declare it in outputs`);
      }
    }
    if (p.kind === 'process') {
      for (const table of p.tables ?? []) if (!spec.tables?.[table]) problems.push(`processor "${name}" reads table "${table}", which the topology does not declare under tables`);
    }
    for (const store of storesOfSpec(p)) if (!namePattern.test(store)) problems.push(`processor "${name}" store "${store}" must match ${namePattern}`);
    if (p.readerSchemas && p.kind === 'router') problems.push(`router "${name}" declares readerSchemas, but a router never decodes a record body; remove them`);
    else if (p.readerSchemas) {
      // The types it can receive are known when every input is written by this topology's processors; a topic fed
      // from outside (producers, connectors) may carry any type.
      const fedFromOutside = p.inputs.some((input) => !writtenTo.has(input));
      const receives = fedFromOutside ? undefined : new Set(p.inputs.flatMap((input) => [...writtenTo.get(input)!]));
      try {
        compileReaderSchemas(name, p.readerSchemas, receives);
      } catch (error) {
        problems.push((error as Error).message);
      }
    }
  }
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
      if (!p) throw invalid(`Topology "${spec.application}" has no processor "${processor}"; it has ${Object.keys(spec.processors).join(', ')}`);
      return storesOfSpec(p);
    },
  };
}

export function processorSpec(topology: Topology, name: string): ProcessorSpec {
  const spec = topology.processors[name];
  if (!spec) throw invalid(`Topology "${topology.application}" has no processor "${name}"; it has ${Object.keys(topology.processors).join(', ')}`);
  return spec;
}
