/**
 * The processor API. A processor decides; the runtime acts: it receives a decoded record, a synchronous view of
 * its key's state and a context to emit through, and performs no I/O. The runtime loads the state a batch needs
 * in one Redis round trip, and writes outputs, state changes and dead letters in one Kafka transaction.
 */
import type { Outgoing, RecordTypeMap, Store, Table, Topic } from './handles.ts';

export interface StreamRecord<V = unknown> {
  readonly topic: string;
  readonly partition: number;
  readonly offset: string;
  readonly key: string | null;
  readonly value: V;
  /** Full name of the Avro record type, e.g. `agentstreams.market.PriceTick`. */
  readonly recordType: string;
  /** Event time, epoch milliseconds. */
  readonly timestamp: number;
  readonly headers: Readonly<Record<string, string>>;
}

export interface Output {
  topic: string;
  key: string | null;
  value: unknown;
  /** The Avro record type to encode `value` with; must be declared in the processor's outputs. */
  recordType: string;
  timestamp?: number;
  headers?: Record<string, string>;
}

/** State of the current record's key in one store. */
export interface KeyState<S> {
  get(): S | undefined;
  set(value: S): void;
  delete(): void;
}

/** A shared table (e.g. portfolios), read-only to processors, refreshed by the runtime. */
export interface TableView<T> {
  get(key: string): T | undefined;
  values(): Iterable<T>;
}

/**
 * Forwarding: `forward(topic, { key, value })` takes the record type from the topic handle and type-checks
 * `value` against it. The low-level form `forward({ topic, key, value, recordType })` takes names (untyped).
 */
export interface Forward {
  <M extends RecordTypeMap>(topic: Topic<M>, record: Outgoing<M>): void;
  (output: Output): void;
}

export interface ProcessorContext {
  readonly processor: string;
  readonly partition: number;
  /** Highest event time seen on this partition, including the current record. */
  readonly streamTime: number;
  /** This record's key's state in a store the processor declared (`stores: [handle]`). */
  store<S>(store: Store<S>): KeyState<S>;
  /** Low-level form: a store declared by name (untyped). */
  store<S>(name: string): KeyState<S>;
  /** A shared table the processor declared under `tables`. */
  table<T>(table: Table<T>): TableView<T>;
  table<T>(name: string): TableView<T>;
  /** The enrichment service's answer for this record (see `enrich`); undefined when none was asked or it failed. */
  answer<T>(): T | undefined;
  forward: Forward;
}

export type ProcessFunction<V = unknown> = (record: StreamRecord<V>, ctx: ProcessorContext) => void;
