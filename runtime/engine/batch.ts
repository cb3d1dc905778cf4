/**
 * The deterministic heart of a task: one partition's batch in, messages and state changes out. It does no I/O:
 * the caller decodes nothing itself, loads the state this batch needs (`prepareBatch` says which), and after
 * `runBatch` writes the messages and the changes in one transaction. The test driver and the Kafka engine both
 * run exactly this code, which is what makes processors testable without a broker.
 *
 * Determinism matters for exactly-once: replaying the same records from the same state gives the same
 * messages in the same order, whatever the batch boundaries were. Windows therefore close record by record,
 * as stream time passes their close time, not at batch ends.
 */
import { AgentStreamsError, ErrorCode } from '../errors.ts';
import type { DecodedRecord } from '../serde/avro.ts';
import type { Output, ProcessorContext, StreamRecord } from '../topology/processor.ts';
import { forwarder, nameOf, type Store, type Table } from '../topology/handles.ts';
import { storesOfSpec, type ProcessorSpec, type Topology } from '../topology/topology.ts';
import { addRecord, closeWindows, nextCloseTime } from '../windows/index.ts';
import {
  deadLetter,
  lateRecord,
  redriveHeader,
  redrivenForAnotherGroup,
  type DeadLetterStage,
  type ProducedMessage,
  type SourceRecord,
} from './dead-letter.ts';

/** One key's stored state: its value and, for windowed stores, when its earliest open window closes. */
export interface StateEntry {
  v: unknown;
  c: number | null;
}

export interface Codec {
  decode(buffer: Buffer | null): DecodedRecord;
  recordTypeOf(buffer: Buffer | null): string;
  encode(recordType: string, value: unknown): Buffer;
}

export interface TaskScope {
  topology: Topology;
  processor: string;
  spec: ProcessorSpec;
  partition: number;
  codec: Codec;
  /** Snapshots of the shared tables the processor declared. */
  tables?: ReadonlyMap<string, ReadonlyMap<string, unknown>>;
  /**
   * The far-future bound (`records.maxEventTimeAheadMs`): a record whose event time lies more than `maxAheadMs`
   * ahead of `wallClock()` is dead-lettered and never advances stream time. Absent or 0: no bound.
   */
  eventTimeBound?: { maxAheadMs: number; wallClock: () => number };
}

type Prepared =
  | { ok: true; source: SourceRecord; record: StreamRecord; key: string | null }
  | { ok: false; source: SourceRecord; stage: DeadLetterStage; error: unknown };

export interface PreparedBatch {
  items: Prepared[];
  /** What an `enrich` processor asks its service, by record offset. */
  requests: Map<string, unknown>;
  /** State keys (`store:key`) the batch reads: load these before `runBatch`. */
  keys: string[];
  /** Highest event time in the batch: windows closing at or before it may close during the batch. */
  maxEventTime: number;
}

export const stateKey = (store: string, key: string): string => `${store}:${key}`;

function defaultTimestamp(value: unknown, kafkaTimestamp: number): number {
  const eventTime = (value as { eventTime?: unknown } | null)?.eventTime;
  return typeof eventTime === 'number' && Number.isFinite(eventTime) ? eventTime : kafkaTimestamp;
}

function eventTimeAhead(eventTime: number, wallClock: number, maxAheadMs: number): AgentStreamsError {
  const iso = (t: number): string => (Math.abs(t) <= 8.64e15 ? new Date(t).toISOString() : String(t));
  return new AgentStreamsError(
    ErrorCode.RECORD_OUT_OF_RANGE,
    `Event time ${eventTime} (${iso(eventTime)}) is ${eventTime - wallClock} ms ahead of the wall clock (${iso(wallClock)}), more than records.maxEventTimeAheadMs = ${maxAheadMs}: ` +
      "dead-lettered so that it cannot advance stream time. Fix the producer's clock or event-time field, or raise AS_MAX_EVENT_TIME_AHEAD_MS.",
    { details: { reason: 'event-time-ahead', eventTime, wallClock, maxAheadMs } },
  );
}

function headersOf(source: SourceRecord): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(source.headers ?? {}))
    if (value !== undefined) out[name] = value.toString();
  return out;
}

/** Decodes a batch (schemas must already be resolved) and lists the state keys it needs. */
export function prepareBatch(scope: TaskScope, all: SourceRecord[]): PreparedBatch {
  const { spec, codec } = scope;
  // Records re-driven for another group were processed here already: skipped, they are consumed and committed only.
  const groupId = scope.topology.groupId(scope.processor);
  const sources = all.some((s) => s.headers?.[redriveHeader.group] !== undefined)
    ? all.filter((s) => !redrivenForAnotherGroup(s.headers, groupId))
    : all;
  const stores = storesOfSpec(spec);
  const keys = new Set<string>();
  let maxEventTime = Number.NEGATIVE_INFINITY;
  const bound = scope.eventTimeBound;
  // One reading of the wall clock per batch: every record of the batch is held to the same horizon.
  const wallClock = bound && bound.maxAheadMs > 0 ? bound.wallClock() : undefined;
  const horizon = wallClock === undefined ? Number.POSITIVE_INFINITY : wallClock + bound!.maxAheadMs;
  const items = sources.map((source): Prepared => {
    const key = source.key === null ? null : source.key.toString('utf8');
    if (spec.kind === 'router') {
      // Routing reads the schema id in the header only; the body is never decoded.
      try {
        const recordType = codec.recordTypeOf(source.value);
        const record: StreamRecord = {
          topic: source.topic,
          partition: source.partition,
          offset: source.offset,
          key,
          value: source.value,
          recordType,
          timestamp: Number(source.timestamp),
          headers: headersOf(source),
        };
        return { ok: true, source, record, key };
      } catch (error) {
        return { ok: false, source, stage: 'deserialize', error };
      }
    }
    let decoded: DecodedRecord;
    try {
      decoded = codec.decode(source.value);
    } catch (error) {
      return { ok: false, source, stage: 'deserialize', error };
    }
    const expected = spec.inputTypes?.[source.topic];
    if (expected && !expected.includes(decoded.recordType)) {
      const message = `A ${decoded.recordType} record on "${source.topic}", where processor "${scope.processor}" reads only ${expected.join(' | ')}: fix the producer, or add the type to the topic's handle.`;
      return {
        ok: false,
        source,
        stage: 'deserialize',
        error: new AgentStreamsError(ErrorCode.DESERIALIZE, message, {
          details: { reason: 'unexpected-record-type', recordType: decoded.recordType, expected },
        }),
      };
    }
    const timestamp = (spec.timestamp ?? defaultTimestamp)(decoded.value, Number(source.timestamp));
    if (timestamp > horizon)
      return {
        ok: false,
        source,
        stage: 'deserialize',
        error: eventTimeAhead(timestamp, wallClock!, bound!.maxAheadMs),
      };
    if (stores.length > 0 && key === null) {
      return {
        ok: false,
        source,
        stage: 'process',
        error: new AgentStreamsError(
          ErrorCode.MISSING_KEY,
          'Record has no key, but this processor keeps state by key.',
        ),
      };
    }
    if (key !== null) for (const store of stores) keys.add(stateKey(store, key));
    if (timestamp > maxEventTime) maxEventTime = timestamp;
    const record: StreamRecord = {
      topic: source.topic,
      partition: source.partition,
      offset: source.offset,
      key,
      value: decoded.value,
      recordType: decoded.recordType,
      timestamp,
      headers: headersOf(source),
    };
    return { ok: true, source, record, key };
  });
  const requests = new Map<string, unknown>();
  if (spec.kind === 'process' && spec.enrich) {
    const enrich = spec.enrich;
    for (const item of items) {
      if (!item.ok) continue;
      try {
        const request = enrich.request(item.record, { partition: scope.partition, table: tableView(scope) });
        if (request !== undefined) requests.set(item.record.offset, request);
      } catch {
        // `process` will meet the same record without an answer and fail or fall back as it sees fit.
      }
    }
  }
  return { items, keys: [...keys], maxEventTime, requests };
}

function tableView(scope: TaskScope) {
  return <T>(handle: Table<T> | string) => {
    const name = nameOf(handle);
    const tables = scope.spec.kind === 'process' ? (scope.spec.tables ?? []) : [];
    if (!tables.includes(name))
      throw new AgentStreamsError(
        ErrorCode.PROCESS,
        `Processor "${scope.processor}" read table "${name}" without declaring it.`,
      );
    const rows = (scope.tables?.get(name) ?? new Map()) as ReadonlyMap<string, T>;
    return { get: (key: string) => rows.get(key), values: () => rows.values() };
  };
}

export interface BatchResult {
  messages: ProducedMessage[];
  /** Final state per key after the batch; `null` deletes. */
  changes: Map<string, StateEntry | null>;
  streamTime: number;
  counts: { processed: number; forwarded: number; deadLettered: number; late: number; amended: number; closed: number };
  /**
   * Per message, the index in `prepared.items` of the record that caused it (-1: wall-clock punctuation). Tracing
   * parents each output on its cause (docs/tracing.md); a window closed by a record's stream time counts as its.
   */
  origins: number[];
}

interface Due {
  at: number;
  key: string;
}

function insertDue(due: Due[], item: Due): void {
  let lo = 0;
  let hi = due.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const m = due[mid]!;
    if (m.at < item.at || (m.at === item.at && m.key < item.key)) lo = mid + 1;
    else hi = mid;
  }
  due.splice(lo, 0, item);
}

export interface RunBatchOptions {
  /** Also close the windows due by this wall-clock time (a punctuation). */
  punctuateAt?: number;
  /** The enrichment service's answers, by record offset. */
  answers?: ReadonlyMap<string, unknown>;
}

/**
 * Runs a prepared batch against loaded state. `state` holds every key in `prepared.keys` that exists, plus the
 * windowed keys due to close by `prepared.maxEventTime` (their close times in `entry.c`).
 */
export function runBatch(
  scope: TaskScope,
  prepared: PreparedBatch,
  state: Map<string, StateEntry>,
  streamTimeBefore: number,
  options: RunBatchOptions = {},
): BatchResult {
  const { punctuateAt, answers } = options;
  const { topology, processor, spec, partition, codec } = scope;
  const entries = new Map(state);
  const changes = new Map<string, StateEntry | null>();
  const messages: ProducedMessage[] = [];
  const counts = { processed: 0, forwarded: 0, deadLettered: 0, late: 0, amended: 0, closed: 0 };
  let streamTime = streamTimeBefore;
  const declared = spec.outputs ?? {};
  const origins: number[] = [];
  const originUpTo = (item: number): void => {
    while (origins.length < messages.length) origins.push(item);
  };

  const encodeOutput = (output: Output): ProducedMessage => {
    const types = declared[output.topic];
    if (!types || !types.includes(output.recordType)) {
      throw new AgentStreamsError(
        ErrorCode.PROCESS,
        `Processor "${processor}" forwarded ${output.recordType} to "${output.topic}", which its outputs do not declare.`,
      );
    }
    return {
      topic: output.topic,
      key: output.key,
      value: codec.encode(output.recordType, output.value),
      ...(output.timestamp === undefined ? {} : { timestamp: String(output.timestamp) }),
      ...(output.headers ? { headers: output.headers } : {}),
    };
  };

  const due: Due[] = [];
  if (spec.kind === 'windowed') {
    for (const [key, entry] of entries)
      if (entry.c !== null && entry.c <= prepared.maxEventTime) insertDue(due, { at: entry.c, key });
  }

  const setEntry = (key: string, entry: StateEntry | null, scratch: Map<string, StateEntry | null>): void => {
    scratch.set(key, entry);
  };
  const commitScratch = (scratch: Map<string, StateEntry | null>, windowed: boolean): void => {
    for (const [key, entry] of scratch) {
      changes.set(key, entry);
      if (entry === null) entries.delete(key);
      else {
        entries.set(key, entry);
        if (windowed && entry.c !== null) insertDue(due, { at: entry.c, key });
      }
    }
  };

  const closeDue = (time: number): void => {
    if (spec.kind !== 'windowed') return;
    const windowed = spec;
    while (due.length > 0 && due[0]!.at <= time) {
      const { at, key } = due.shift()!;
      const entry = entries.get(key);
      if (!entry || entry.c !== at) continue; // superseded by a later change of the same key
      const result = closeWindows(windowed.aggregation, entry.v as never, time);
      const recordKey = key.slice(windowed.store.length + 1);
      const out: ProducedMessage[] = [];
      if (windowed.emit === 'close') {
        for (const window of result.closed) {
          windowed.onResult(
            { ...window, final: true },
            { key: recordKey, partition, streamTime: time, forward: forwarder((o) => out.push(encodeOutput(o))) },
          );
        }
      }
      counts.closed += result.closed.length;
      messages.push(...out);
      counts.forwarded += out.length;
      const scratch = new Map<string, StateEntry | null>();
      setEntry(
        key,
        result.state === undefined
          ? null
          : { v: result.state, c: nextCloseTime(windowed.aggregation, result.state) ?? null },
        scratch,
      );
      commitScratch(scratch, true);
    }
  };

  for (let index = 0; index < prepared.items.length; index += 1) {
    const item = prepared.items[index]!;
    originUpTo(index - 1);
    if (!item.ok) {
      messages.push(deadLetter(topology.deadLetterTopic, processor, item.stage, item.source, item.error));
      counts.deadLettered += 1;
      continue;
    }
    const { record, key, source } = item;
    if (record.timestamp > streamTime) streamTime = record.timestamp;
    const out: ProducedMessage[] = [];
    const scratch = new Map<string, StateEntry | null>();
    let amendedRecord = false;
    try {
      if (spec.kind === 'router') {
        const topic = spec.routes[record.recordType];
        if (!topic)
          throw new AgentStreamsError(
            ErrorCode.NO_ROUTE,
            `Router "${processor}" has no route for record type ${record.recordType}.`,
          );
        out.push({
          topic,
          key: source.key,
          value: source.value,
          timestamp: source.timestamp,
          headers: Object.fromEntries(
            Object.entries(source.headers ?? {}).filter((e): e is [string, Buffer | string] => e[1] !== undefined),
          ),
        });
      } else if (spec.kind === 'process') {
        const ctx: ProcessorContext = {
          processor,
          partition,
          streamTime,
          store: <S>(handle: Store<S> | string) => {
            const name = nameOf(handle);
            if (!(spec.stores ?? []).includes(name))
              throw new AgentStreamsError(
                ErrorCode.PROCESS,
                `Processor "${processor}" used store "${name}" without declaring it.`,
              );
            const full = stateKey(name, key!);
            return {
              get: () =>
                scratch.has(full) ? (scratch.get(full)?.v as S | undefined) : (entries.get(full)?.v as S | undefined),
              set: (value: S) => setEntry(full, { v: value, c: null }, scratch),
              delete: () => setEntry(full, null, scratch),
            };
          },
          table: tableView(scope),
          answer: <T>() => answers?.get(record.offset) as T | undefined,
          forward: forwarder((output) => out.push(encodeOutput(output))),
        };
        spec.process(record, ctx);
      } else {
        const windowed = spec;
        const full = stateKey(windowed.store, key!);
        const value = windowed.value ? windowed.value(record) : record.value;
        // addRecord may update the state in place; work on a copy so that a record whose result handler throws
        // leaves no trace.
        const current = entries.get(full)?.v;
        const result = addRecord(
          windowed.aggregation,
          (current === undefined ? undefined : structuredClone(current)) as never,
          value,
          record.timestamp,
          streamTime,
        );
        if (result.late) {
          messages.push(lateRecord(topology.lateTopic, processor, source, streamTime, record.timestamp));
          counts.late += 1;
          closeDue(streamTime);
          continue;
        }
        setEntry(
          full,
          result.state === undefined
            ? null
            : { v: result.state, c: nextCloseTime(windowed.aggregation, result.state) ?? null },
          scratch,
        );
        if (windowed.emit === 'update') {
          for (const window of result.updated) {
            windowed.onResult(
              { ...window, final: false },
              { key: key!, partition, streamTime, forward: forwarder((o) => out.push(encodeOutput(o))) },
            );
          }
        }
        // A late record folded into a closed window kept for amendments: its final result, again, amended.
        for (const window of result.amended) {
          windowed.onResult(
            { ...window, final: true, amended: true },
            { key: key!, partition, streamTime, forward: forwarder((o) => out.push(encodeOutput(o))) },
          );
        }
        amendedRecord = result.amended.length > 0;
      }
    } catch (error) {
      // The record's effects are discarded as a whole: nothing it forwarded or changed survives.
      messages.push(
        deadLetter(
          topology.deadLetterTopic,
          processor,
          error instanceof AgentStreamsError && error.code === ErrorCode.SERIALIZE
            ? 'serialize'
            : spec.kind === 'router'
              ? 'route'
              : 'process',
          source,
          error,
        ),
      );
      counts.deadLettered += 1;
      continue;
    }
    commitScratch(scratch, spec.kind === 'windowed');
    messages.push(...out);
    counts.forwarded += out.length;
    counts.processed += 1;
    if (amendedRecord) counts.amended += 1;
    closeDue(streamTime);
  }
  originUpTo(prepared.items.length - 1);
  if (punctuateAt !== undefined) closeDue(punctuateAt);
  originUpTo(-1);
  return { messages, changes, streamTime, counts, origins };
}

/**
 * Wall-clock punctuation: closes windows due by `time` although no record arrived, so idle keys still emit.
 * `state` holds the keys due by `time`.
 */
export function runPunctuation(
  scope: TaskScope,
  state: Map<string, StateEntry>,
  streamTime: number,
  time: number,
): BatchResult {
  const result = runBatch(scope, { items: [], keys: [], maxEventTime: time, requests: new Map() }, state, streamTime, {
    punctuateAt: time,
  });
  // Windows closed by the wall clock have emitted their final result: stream time moves up to that time so that
  // a record arriving later for one of them is late instead of reopening it (and emitting it twice).
  return { ...result, streamTime: Math.max(streamTime, time) };
}
