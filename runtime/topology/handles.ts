/**
 * Typed handles: a topic, a store or a shared table is declared once, as a value that carries its name and the
 * type of what it holds, and then passed wherever it is used — in the topology (`inputs`, `outputs`, `stores`,
 * `tables`) and in the processor (`ctx.forward(findings, …)`, `ctx.store(prices)`). Nothing is written twice, and
 * the compiler checks what goes in and comes out. Kafka Streams has `KStream<K, V>`, Quix Streams `app.topic(…)`.
 *
 *   const trades = topic<Trade>('signals.trade', TradeType);          // one record type
 *   const events = topic<{ [PriceTickType]: PriceTick; [TradeType]: Trade }>('market.events', [PriceTickType, TradeType]);
 *   const volume = store<VolumeState>('volume');
 *
 * A topic holding several record types gives its processors a union of records with `recordType` as the
 * discriminant: `if (record.recordType === TradeType) record.value.quantity`. The types are kept honest at run
 * time: a record whose type its input handle does not declare is dead-lettered before a processor sees it.
 */
import { AgentStreamsError, ErrorCode } from '../errors.ts';
import type { Forward, Output, StreamRecord } from './processor.ts';

/** Record type full name → the TypeScript type of its values. A single-type topic is `{ [recordType: string]: T }`. */
export type RecordTypeMap = { readonly [recordType: string]: unknown };

/** A topic: its name, the Avro record types it holds, and (for the compiler only) their value types. */
export interface Topic<M extends RecordTypeMap = RecordTypeMap> {
  readonly kind: 'topic';
  readonly name: string;
  readonly recordTypes: readonly string[];
  /** For the compiler only; never set. */
  readonly __types?: M;
}

/** A processor's state store: its name and (for the compiler only) the type of one key's state. */
export interface Store<S = unknown> {
  readonly kind: 'store';
  readonly name: string;
  /** For the compiler only; never set. */
  readonly __state?: S;
}

/** A shared table a processor reads (declared in the topology's `tables` under the same name). */
export interface Table<T = unknown> {
  readonly kind: 'table';
  readonly name: string;
  /** For the compiler only; never set. */
  readonly __row?: T;
}

/** A topic holding one record type, of values `T`: what `topic<T>(name, recordType)` returns. */
export type TopicOf<T> = Topic<{ [recordType: string]: T }>;

/** The value type(s) a topic holds. */
export type ValueOf<M extends RecordTypeMap> = M[keyof M & string];

/** A record read from a topic: for several record types, a union discriminated by `recordType`. */
export type InputRecord<M extends RecordTypeMap> = {
  [K in keyof M & string]: StreamRecord<M[K]> & { readonly recordType: K };
}[keyof M & string];

/** The record a processor receives from one of its inputs (a topic handle, or a bare topic name: untyped). */
export type RecordOf<H> = H extends Topic<infer M> ? InputRecord<M> : StreamRecord<unknown>;

/** The value a processor receives from its inputs. */
export type InputValueOf<H> = H extends Topic<infer M> ? ValueOf<M> : unknown;

/**
 * What `ctx.forward(topic, record)` takes: the value type comes from the handle. On a topic of one record type
 * the record type is the handle's; on a topic of several, `recordType` says which, and types `value`.
 */
export type Outgoing<M extends RecordTypeMap> = {
  [K in keyof M & string]: {
    key: string | null;
    value: M[K];
    timestamp?: number;
    headers?: Record<string, string>;
  } & (string extends K ? { recordType?: string } : { recordType: K });
}[keyof M & string];

/** `Outgoing` with the value's type forgotten: what the runtime receives. */
export interface OutgoingRecord {
  key: string | null;
  value: unknown;
  recordType?: string;
  timestamp?: number;
  headers?: Record<string, string>;
}

const namePattern = /^[a-z][a-z0-9-]*$/;
const topicPattern = /^[A-Za-z0-9._-]{1,249}$/;
const recordTypePattern = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;

function invalid(message: string): AgentStreamsError {
  return new AgentStreamsError(ErrorCode.TOPOLOGY_INVALID, message);
}

/**
 * Declares a topic. `topic<Trade>(name, 'agentstreams.market.Trade')` holds one record type;
 * `topic<{ 'a.PriceTick': PriceTick; 'a.Trade': Trade }>(name, ['a.PriceTick', 'a.Trade'])` holds several.
 */
export function topic<T>(name: string, recordType: string): Topic<{ [recordType: string]: T }>;
export function topic<M extends RecordTypeMap>(name: string, recordTypes: readonly (keyof M & string)[]): Topic<M>;
export function topic(name: string, recordTypes: string | readonly string[]): Topic {
  const types = typeof recordTypes === 'string' ? [recordTypes] : [...(recordTypes ?? [])];
  const problems: string[] = [];
  if (typeof name !== 'string' || !topicPattern.test(name))
    problems.push(
      `its name ${JSON.stringify(name)} is not a Kafka topic name (letters, digits, '.', '_', '-'; 1–249 characters)`,
    );
  if (types.length === 0)
    problems.push(
      'it declares no record type; give the full Avro name of what it holds, e.g. topic<Trade>(name, "agentstreams.market.Trade")',
    );
  for (const type of types)
    if (typeof type !== 'string' || !recordTypePattern.test(type))
      problems.push(`record type ${JSON.stringify(type)} is not a full Avro name like "agentstreams.market.Trade"`);
  if (new Set(types).size !== types.length) problems.push(`it lists a record type twice: ${types.join(', ')}`);
  if (problems.length > 0) throw invalid(`Invalid topic ${JSON.stringify(name)}: ${problems.join('; ')}.`);
  return Object.freeze({ kind: 'topic', name, recordTypes: Object.freeze(types) });
}

/** Declares a state store holding one `S` per record key. */
export function store<S>(name: string): Store<S> {
  if (typeof name !== 'string' || !namePattern.test(name))
    throw invalid(`Invalid store name ${JSON.stringify(name)}: it must match ${namePattern}.`);
  return Object.freeze({ kind: 'store', name });
}

/** Names a shared table of `T` rows, declared in the topology's `tables` under the same name. */
export function table<T>(name: string): Table<T> {
  if (typeof name !== 'string' || name.length === 0)
    throw invalid(`Invalid table name ${JSON.stringify(name)}: give the name it has under the topology's tables.`);
  return Object.freeze({ kind: 'table', name });
}

export function isTopic(value: unknown): value is Topic {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'topic';
}

/**
 * The wire-level output of `ctx.forward(topic, record)`: the record type is the handle's own when it holds one,
 * else the record must name one of the handle's.
 */
export function outputOf(target: Topic, record: OutgoingRecord): Output {
  const recordType = record.recordType ?? (target.recordTypes.length === 1 ? target.recordTypes[0]! : undefined);
  if (recordType === undefined) {
    throw new AgentStreamsError(
      ErrorCode.PROCESS,
      `A record for "${target.name}" needs a recordType: the topic holds ${target.recordTypes.join(', ')}.`,
    );
  }
  if (!target.recordTypes.includes(recordType)) {
    throw new AgentStreamsError(
      ErrorCode.PROCESS,
      `A ${recordType} record cannot go to "${target.name}": its handle holds only ${target.recordTypes.join(', ')}.`,
    );
  }
  return {
    topic: target.name,
    key: record.key,
    value: record.value,
    recordType,
    ...(record.timestamp === undefined ? {} : { timestamp: record.timestamp }),
    ...(record.headers ? { headers: record.headers } : {}),
  };
}

/** The runtime's `ctx.forward`: both forms, reduced to the wire-level output `emit` encodes. */
export function forwarder(emit: (output: Output) => void): Forward {
  const forward = (target: Topic | Output, record?: OutgoingRecord): void =>
    emit(isTopic(target) ? outputOf(target, record ?? missingRecord(target)) : target);
  return forward as Forward;
}

function missingRecord(target: Topic): never {
  throw new AgentStreamsError(
    ErrorCode.PROCESS,
    `forward() to "${target.name}" needs a record: forward(topic, { key, value }).`,
  );
}

/** The name a store or table is used by: handles and (low-level) names alike. */
export function nameOf(handle: Store | Table | string): string {
  return typeof handle === 'string' ? handle : handle.name;
}
