/**
 * Declared column mappings (`mapColumns`) and the Avro → RowBinary transcoder compiled from them.
 *
 * A mapping given as a function (`mapTo`) can only be run on a decoded record: avsc builds the object, the function
 * builds the row, and the writer encodes the row. A mapping declared column by column says the same thing as data,
 * so the sink can also compile it, once per writer schema, into a transcoder that reads the Avro body and writes the
 * row's RowBinary directly, with no decoded object, row object or intermediate strings for ASCII text: the CPU
 * profile of the sink showed avsc, the mapping and the encoding together at about half of its time.
 *
 * The declared mapping's `toRows` (used on the generic path) is derived from the same declaration, and the transcoder
 * gives up (returns false) on anything it is not sure of: a body that fails the writer schema's bounds check, a
 * value outside its documented range, trailing bytes, a long past 2^53, a value its column refuses. The sink then
 * takes the generic path for that record (decode, map, write), which accepts it or dead-letters it with the error
 * it always gave. So the transcoder changes the speed, never the outcome: `test/sinks/clickhouse/transcode.test.ts`
 * checks that both paths write the same bytes.
 */
import avro from 'avsc';
import { compileBoundsCheck, parseSchemaGraph, type SchemaNode } from '../../runtime/serde/bounded.ts';
import { compileRangeCheck, rangeRuleOf, type RangeRule } from '../../runtime/serde/ranges.ts';
import { AgentStreamsError, ErrorCode } from '../../runtime/errors.ts';
import type { Codec, RowBinaryBuilder } from './row-binary.ts';
import type { RecordMeta } from './topic-sink.ts';

/** What fills a column: a field of the record (as it is, in whole seconds from epoch ms, or as compact JSON), or the record's Kafka metadata. */
export type ColumnSource =
  | { readonly field: string; readonly as?: 'value' | 'seconds' | 'json' }
  | { readonly meta: 'topic' | 'partition' | 'offset' | 'timestamp' | 'recordType'; readonly as?: 'value' | 'seconds' };

export type ColumnSources = Readonly<Record<string, ColumnSource>>;

/** A record mapping declared column by column (see `mapColumns`). */
export interface DeclaredMapping {
  table: string;
  columns: ColumnSources;
  toRows(value: unknown, meta: RecordMeta): Record<string, unknown>;
}

const metaValue = (source: Extract<ColumnSource, { meta: string }>, meta: RecordMeta): unknown => {
  switch (source.meta) {
    case 'topic':
      return meta.topic;
    case 'partition':
      return meta.partition;
    case 'offset':
      return Number(meta.offset);
    case 'timestamp':
      return Number(meta.timestamp);
    case 'recordType':
      return meta.recordType;
  }
};

const seconds = (ms: unknown): unknown => (typeof ms === 'number' ? Math.floor(ms / 1000) : ms);

/**
 * A mapping of one record type to one row of `table`, declared as a source per column: every column of the table
 * must be named (the sink checks at start). `{ field: 'eventTime', as: 'seconds' }` is `Math.floor(value.eventTime
 * / 1000)`; `as: 'json'` is `JSON.stringify(value.field)`; `{ meta: 'offset' }` is `Number(meta.offset)`,
 * `{ meta: 'timestamp' }` the Kafka timestamp in epoch ms (`as: 'seconds'` for a DateTime). The sink writes such a
 * mapping's rows without decoding the records into objects, when the writer schema allows it.
 */
export function mapColumns(table: string, columns: ColumnSources): DeclaredMapping {
  const problems: string[] = [];
  for (const [column, source] of Object.entries(columns)) {
    const as = source.as ?? 'value';
    if ('field' in source) {
      if (typeof source.field !== 'string' || source.field === '')
        problems.push(`${column}: field must be a field name`);
      if (!['value', 'seconds', 'json'].includes(as)) problems.push(`${column}: as must be value, seconds or json`);
    } else if ('meta' in source) {
      if (!['topic', 'partition', 'offset', 'timestamp', 'recordType'].includes(source.meta))
        problems.push(`${column}: meta must be topic, partition, offset, timestamp or recordType`);
      if (!['value', 'seconds'].includes(as)) problems.push(`${column}: as must be value or seconds for meta`);
    } else problems.push(`${column}: give a field or a meta source`);
  }
  if (Object.keys(columns).length === 0) problems.push('no columns');
  if (problems.length > 0)
    throw new AgentStreamsError(
      ErrorCode.SINK_OPTIONS_INVALID,
      `Invalid column mapping for table "${table}": ${problems.join('; ')}.`,
      { details: { table, problems } },
    );
  const entries = Object.entries(columns);
  return {
    table,
    columns,
    toRows(value, meta) {
      const record = value as Record<string, unknown>;
      const row: Record<string, unknown> = {};
      for (const [column, source] of entries) {
        const raw = 'field' in source ? record[source.field] : metaValue(source, meta);
        row[column] = source.as === 'seconds' ? seconds(raw) : source.as === 'json' ? JSON.stringify(raw) : raw;
      }
      return row;
    },
  };
}

export function isDeclaredMapping(mapping: object): mapping is DeclaredMapping {
  return 'columns' in mapping && typeof (mapping as DeclaredMapping).columns === 'object';
}

/** The record a transcoder reads: its Confluent-framed value and its Kafka metadata. */
export interface TranscodeInput {
  topic: string;
  partition: number;
  offset: string;
  timestamp: string;
  value: Buffer | null;
}

/** Writes the record's row into `out`, or returns false (having written any part of it: the caller takes it back). */
export type Transcoder = (out: RowBinaryBuilder, record: TranscodeInput) => boolean;

/** Thrown inside a transcoder to give up on a record; caught by it. */
class GiveUp {}
const giveUp = new GiveUp();

const SAFE = 9007199254740990; // avsc's isSafeLong bound

/** avsc's readLong, on our own position: the same number for every input it accepts. */
function readLong(buf: Buffer, at: { pos: number }): number {
  let n = 0;
  let k = 0;
  let b: number;
  let h: number;
  let pos = at.pos;
  do {
    b = buf[pos++]!;
    h = b & 0x80;
    n |= (b & 0x7f) << k;
    k += 7;
  } while (h && k < 28);
  if (h) {
    let f = n;
    let fk = 268435456;
    do {
      b = buf[pos++]!;
      f += (b & 0x7f) * fk;
      fk *= 128;
    } while (b & 0x80);
    at.pos = pos;
    return (f % 2 ? -(f + 1) : f) / 2;
  }
  at.pos = pos;
  return (n >> 1) ^ -(n & 1);
}

/** How one Avro field is read: natively for scalars and enums, by avsc for the rest. */
type FieldReader = (buf: Buffer, at: { pos: number }, end: number) => unknown;

const STRING_REF = Symbol('string-ref');

function numericLeaves(node: SchemaNode): boolean {
  switch (node.kind) {
    case 'int':
    case 'long':
    case 'float':
    case 'double':
      return true;
    case 'union':
      return node.branches.some(numericLeaves);
    case 'array':
      return numericLeaves(node.items);
    case 'map':
      return numericLeaves(node.values);
    default:
      return false;
  }
}

function fieldReader(type: avro.Type, keep: boolean, rawString: boolean): FieldReader {
  switch (type.typeName) {
    case 'string':
      return (buf, at, end) => {
        const len = readLong(buf, at);
        const start = at.pos;
        if (len < 0 || start + len > end) throw giveUp;
        at.pos = start + len;
        if (!keep) return undefined;
        if (rawString) {
          // Copied when the row is written, if it is ASCII (see the column step).
          stringRef.start = start;
          stringRef.len = len;
          return STRING_REF;
        }
        return buf.toString('utf8', start, start + len);
      };
    case 'int':
      return (buf, at) => readLong(buf, at);
    case 'long':
      return (buf, at) => {
        const n = readLong(buf, at);
        if (n < -SAFE || n > SAFE) throw giveUp;
        return n;
      };
    case 'double':
      return (buf, at, end) => {
        if (at.pos + 8 > end) throw giveUp;
        const n = buf.readDoubleLE(at.pos);
        at.pos += 8;
        return n;
      };
    case 'float':
      return (buf, at, end) => {
        if (at.pos + 4 > end) throw giveUp;
        const n = buf.readFloatLE(at.pos);
        at.pos += 4;
        return n;
      };
    case 'boolean':
      return (buf, at, end) => {
        if (at.pos + 1 > end) throw giveUp;
        return !!buf[at.pos++];
      };
    case 'enum': {
      const symbols = (type as avro.types.EnumType).symbols;
      return (buf, at) => {
        const symbol = symbols[readLong(buf, at)];
        if (symbol === undefined) throw giveUp;
        return symbol;
      };
    }
    default:
      return (buf, at) => {
        const { value, offset } = type.decode(buf, at.pos);
        if (offset < 0) throw giveUp;
        at.pos = offset;
        return value;
      };
  }
}

/** Whether `n` passes `rule` (a double's: finite unless the rule says otherwise), as ranges.ts decides it. */
function numberPasses(rule: RangeRule): (n: number) => boolean {
  const { min, max, exclusiveMin = false, exclusiveMax = false } = rule;
  const finite = rule.finite !== false;
  const lo = min ?? Number.NEGATIVE_INFINITY;
  const hi = max ?? Number.POSITIVE_INFINITY;
  return (n) =>
    (!finite || Number.isFinite(n)) && (exclusiveMin ? n > lo : n >= lo) && (exclusiveMax ? n < hi : n <= hi);
}

/**
 * A `map<double>` field used only as JSON: its JSON text built straight from the Avro bytes, its values checked
 * against the field's range rule. Keys that JSON.stringify of avsc's object would reorder, drop or escape (array
 * indexes, `__proto__`, duplicates, quotes, backslashes, control and non-ASCII characters) make it decode the map
 * with avsc instead and return that object, which the column step stringifies: the same text either way.
 */
function jsonMapReader(type: avro.Type, passes: (n: number) => boolean): FieldReader {
  const keys: string[] = [];
  return (buf, at, end) => {
    const from = at.pos;
    let json = '{';
    keys.length = 0;
    let plain = true;
    for (;;) {
      let count = readLong(buf, at);
      if (count === 0) break;
      if (count < 0) {
        count = -count;
        readLong(buf, at); // the block's size in bytes
      }
      for (let k = 0; k < count; k += 1) {
        const len = readLong(buf, at);
        const start = at.pos;
        if (len < 0 || start + len + 8 > end) throw giveUp;
        if (plain) {
          const c0 = buf[start]!;
          if (len === 0 || (c0 >= 0x30 && c0 <= 0x39) || keys.length >= 32) plain = false;
          for (let i = start; plain && i < start + len; i += 1) {
            const c = buf[i]!;
            if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) plain = false;
          }
        }
        const n = buf.readDoubleLE(start + len);
        at.pos = start + len + 8;
        if (!passes(n)) throw giveUp;
        if (plain) {
          const key = buf.toString('latin1', start, start + len);
          if (key === '__proto__' || keys.includes(key)) plain = false;
          else {
            keys.push(key);
            json += `${keys.length > 1 ? ',' : ''}"${key}":${Number.isFinite(n) ? n : 'null'}`;
          }
        }
      }
    }
    if (plain) return `${json}}`;
    const { value, offset } = type.decode(buf, from);
    if (offset < 0 || offset !== at.pos) throw giveUp;
    return value;
  };
}

/** Where the last ASCII string read in place lies in the body (valid until the next string is read). */
const stringRef = { start: 0, len: 0 };

/**
 * Compiles the transcoder of records written with `schema` (its JSON, as the registry has it) for `mapping` into a
 * table whose columns, in insert order, are `columns`. Returns undefined when this writer schema does not fit the
 * mapping (a field it lacks, a source it cannot read): then every record of it takes the generic path.
 */
export function compileTranscoder(
  schema: unknown,
  recordType: string,
  mapping: DeclaredMapping,
  columns: ReadonlyArray<{ name: string; codec: Codec }>,
): Transcoder | undefined {
  let type: avro.Type;
  let graph: SchemaNode;
  try {
    type = avro.Type.forSchema(schema as avro.Schema);
    graph = parseSchemaGraph(schema);
  } catch {
    return undefined;
  }
  if (type.typeName !== 'record' || graph.kind !== 'record') return undefined;
  // A field named like an Object.prototype property would not be a plain slot of the range check's object.
  if (graph.fields.some((f) => f.name in Object.prototype)) return undefined;
  const fields = (type as avro.types.RecordType).fields;
  const bounds = compileBoundsCheck(schema);
  const ranges = compileRangeCheck(graph);
  const wanted = new Set<string>();
  const ascii = new Set<string>();
  for (const column of columns) {
    const source = mapping.columns[column.name];
    if (!source) return undefined;
    if ('field' in source) {
      if (!fields.some((f) => f.name === source.field)) return undefined;
      wanted.add(source.field);
    }
  }
  // A string field read in place must feed String columns only, as it is (RowBinary: length, then the bytes).
  for (const name of wanted) {
    const uses = columns.filter((c) => {
      const s = mapping.columns[c.name]!;
      return 'field' in s && s.field === name;
    });
    if (
      uses.every((c) => {
        const s = mapping.columns[c.name]!;
        return (s.as ?? 'value') === 'value' && c.codec.type === 'String';
      })
    )
      ascii.add(name);
  }
  // Every field with numbers is read when there are range checks, so that they see what the generic path sees.
  // map<double> fields used only as JSON are read by jsonMapReader, which checks their range rule itself.
  const jsonMaps = new Map<string, (n: number) => boolean>();
  for (const field of graph.fields) {
    if (!(field.type.kind === 'map' && field.type.values.kind === 'double' && wanted.has(field.name))) continue;
    const uses = columns.filter((c) => {
      const s = mapping.columns[c.name]!;
      return 'field' in s && s.field === field.name;
    });
    if (uses.every((c) => mapping.columns[c.name]!.as === 'json'))
      jsonMaps.set(field.name, numberPasses(rangeRuleOf(field, graph.name) ?? {}));
  }
  const checked = ranges
    ? new Set(graph.fields.filter((f) => numericLeaves(f.type) && !jsonMaps.has(f.name)).map((f) => f.name))
    : new Set();
  const readers = fields.map((f) => {
    const passes = jsonMaps.get(f.name);
    if (passes) return jsonMapReader(f.type, passes);
    const keep = wanted.has(f.name) || checked.has(f.name);
    return fieldReader(f.type, keep, ascii.has(f.name) && !checked.has(f.name));
  });
  const names = fields.map((f) => f.name);
  const slots = new Map(names.map((name, i) => [name, i]));
  type Step = (out: RowBinaryBuilder, values: unknown[], record: TranscodeInput, body: Buffer) => void;
  const steps: Step[] = columns.map((column): Step => {
    const source = mapping.columns[column.name]!;
    const codec = column.codec;
    const as = source.as ?? 'value';
    if ('meta' in source) {
      const meta = { recordType } as RecordMeta;
      return (out, _values, record) => {
        meta.topic = record.topic;
        meta.partition = record.partition;
        meta.offset = record.offset;
        meta.timestamp = record.timestamp;
        const raw = metaValue(source, meta);
        codec.write(out, as === 'seconds' ? seconds(raw) : raw);
      };
    }
    const slot = slots.get(source.field)!;
    if (ascii.has(source.field))
      return (out, values, _record, body) => {
        const v = values[slot];
        if (v !== STRING_REF) {
          codec.write(out, v);
          return;
        }
        // ASCII: its bytes are the row's bytes, after a one-byte length when it is under 128 (copied byte by byte:
        // cheaper than a native copy for short strings). Anything else is decoded as avsc decodes it (invalid UTF-8
        // becomes U+FFFD) and encoded as the generic path encodes it.
        const start = refStart[slot]!;
        const len = refLen[slot]!;
        if (len < 0x80) {
          out.ensure(1 + len);
          const dst = out.buf;
          let p = out.pos;
          dst[p++] = len;
          let i = start;
          const stop = start + len;
          for (; i < stop; i += 1) {
            const b = body[i]!;
            if (b >= 0x80) break;
            dst[p++] = b;
          }
          if (i === stop) {
            out.pos = p;
            return;
          }
        } else {
          let i = start;
          const stop = start + len;
          while (i < stop && body[i]! < 0x80) i += 1;
          if (i === stop) {
            out.varint(len);
            out.ensure(len);
            body.copy(out.buf, out.pos, start, stop);
            out.pos += len;
            return;
          }
        }
        codec.write(out, body.toString('utf8', start, start + len));
      };
    if (as === 'json' && jsonMaps.has(source.field))
      return (out, values) => {
        const v = values[slot];
        codec.write(out, typeof v === 'string' ? v : JSON.stringify(v));
      };
    if (as === 'json') return (out, values) => codec.write(out, JSON.stringify(values[slot]));
    if (as === 'seconds') return (out, values) => codec.write(out, seconds(values[slot]));
    return (out, values) => codec.write(out, values[slot]);
  });
  const checkedNames = [...(checked as Set<string>)];
  const checkedSlots = checkedNames.map((name) => slots.get(name)!);
  // One object for the range check of every record, its fields overwritten each time.
  const check: Record<string, unknown> = Object.fromEntries(checkedNames.map((name) => [name, undefined]));
  const refStart = new Float64Array(names.length);
  const refLen = new Float64Array(names.length);
  const values: unknown[] = names.map(() => undefined);
  const at = { pos: 0 };
  return (out, record) => {
    const framed = record.value;
    if (!framed || framed.length < 5 || framed[0] !== 0) return false;
    const body = framed.subarray(5);
    try {
      bounds(body);
      at.pos = 0;
      const end = body.length;
      for (let i = 0; i < readers.length; i += 1) {
        const v = readers[i]!(body, at, end);
        values[i] = v;
        if (v === STRING_REF) {
          refStart[i] = stringRef.start;
          refLen[i] = stringRef.len;
        }
      }
      if (at.pos !== end) return false;
      if (ranges) {
        for (let i = 0; i < checkedSlots.length; i += 1) check[checkedNames[i]!] = values[checkedSlots[i]!];
        ranges(check);
      }
      for (let i = 0; i < steps.length; i += 1) steps[i]!(out, values, record, body);
      return true;
    } catch {
      return false;
    }
  };
}
