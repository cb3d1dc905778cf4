/**
 * The Avro → RowBinary transcoder of declared mappings (`mapColumns`) against the generic path it stands in for:
 * for findings with hostile values (multi-byte, astral and invalid UTF-8 text, a lone surrogate, empty and long
 * strings, integer-like and odd map keys, -0, subnormal and extreme doubles, offsets and timestamps near 2^53), the
 * transcoder writes exactly the bytes that decoding with avsc, mapping with the fleet's `findingRow` and encoding
 * the row write; and for every record the generic path would refuse or dead-letter (out-of-range values, a
 * non-finite double, trailing or missing bytes, a bad enum index, a long past 2^53, a value its column refuses) it
 * gives up, so the sink takes the generic path. Pure computation: no server is involved.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import avro from 'avsc';
import { describe, expect, it } from 'vitest';
import { findingRow } from '../../../processors/results/rows.ts';
import { codecFor, compileRowEncoder, RowBinaryBuilder } from '../../../sinks/clickhouse/row-binary.ts';
import { compileTranscoder, mapColumns, type TranscodeInput } from '../../../sinks/clickhouse/transcode.ts';
import type { RecordMeta } from '../../../sinks/clickhouse/topic-sink.ts';
import type { Finding } from '../../../schemas/generated/types.ts';
import { findingColumns } from './findings.ts';

const root = join(import.meta.dirname, '../../..');
const schema = JSON.parse(readFileSync(join(root, 'schemas/fleet/Finding.avsc'), 'utf8')) as avro.Schema;
const type = avro.Type.forSchema(schema);
const recordType = 'agentstreams.fleet.Finding';

/** The findings table's columns as system.columns names their types (infra/clickhouse/migrations/0002). */
const findingsTable: Array<[string, string]> = [
  ['finding_id', 'String'],
  ['agent', 'String'],
  ['rule', 'String'],
  ['symbol', 'String'],
  ['portfolio_id', 'String'],
  ['severity', "Enum8('info' = 1, 'low' = 2, 'medium' = 3, 'high' = 4, 'critical' = 5)"],
  ['window_start', "DateTime('UTC')"],
  ['window_end', "DateTime('UTC')"],
  ['event_time', "DateTime('UTC')"],
  ['event_time_ms', 'UInt64'],
  ['evidence', 'String'],
  ['source_topic', 'String'],
  ['source_partition', 'UInt32'],
  ['source_offset', 'UInt64'],
  ['created_at', "DateTime('UTC')"],
  ['version', 'UInt64'],
];
const columns = findingsTable.map(([name, t]) => ({ name, codec: codecFor(t)! }));
const encodeRow = compileRowEncoder(columns);

function framed(body: Buffer, id = 7): Buffer {
  const header = Buffer.alloc(5);
  header.writeInt32BE(id, 1);
  return Buffer.concat([header, body]);
}

function finding(overrides: Partial<Finding> = {}): Finding {
  return {
    findingId: 'f-1',
    agent: 'price-move',
    rule: 'drop-2m',
    symbol: 'AAPL',
    portfolioId: '',
    severity: 'high',
    windowStart: 1_767_225_600_000,
    windowEnd: 1_767_225_660_000,
    eventTime: 1_767_225_659_999,
    evidence: { return: -0.03, zScore: 4.2 },
    summary: 'AAPL fell',
    sourceTopic: 'signals.price',
    sourcePartition: 3,
    sourceOffset: 12_345,
    ...overrides,
  };
}

const record = (value: Buffer, meta: Partial<TranscodeInput> = {}): TranscodeInput => ({
  topic: 'fleet.findings',
  partition: 2,
  offset: '987654',
  timestamp: '1767225660123',
  value,
  ...meta,
});

/** The generic path: avsc, the fleet's mapping function, the row encoder. */
function generic(input: TranscodeInput): Buffer {
  const value = type.fromBuffer(input.value!.subarray(5)) as Finding;
  const meta: RecordMeta = { ...input, key: null, recordType };
  const out = new RowBinaryBuilder(64);
  expect(encodeRow(findingRow(value, meta) as unknown as Record<string, unknown>, out)).toBe(true);
  out.endRow();
  return Buffer.concat(out.take().parts);
}

function transcoded(input: TranscodeInput): Buffer | false {
  const transcode = compileTranscoder(schema, recordType, findingColumns, columns)!;
  const out = new RowBinaryBuilder(64);
  if (!transcode(out, input)) return false;
  out.endRow();
  return Buffer.concat(out.take().parts);
}

describe('compileTranscoder (findings)', () => {
  it('writes the bytes that decoding, findingRow and the row encoder write, for hostile values', () => {
    const cases: Array<[Partial<Finding>, Partial<TranscodeInput>?]> = [
      [{}],
      [{ findingId: '', agent: 'ü', rule: 'naïve — “quoted”', symbol: '𝔘𝔫𝔦', summary: '' }],
      [{ portfolioId: 'lone \ud800 surrogate', sourceTopic: 'tab\tnew\nline\\"\u0000' }],
      [{ findingId: 'x'.repeat(126), agent: 'y'.repeat(127), rule: 'z'.repeat(128), symbol: 'é'.repeat(300) }],
      [{ evidence: {} }],
      [{ evidence: { '2': 1, b: -0, '1': 5e-324, a: 1.7976931348623157e308, 'k"\\\n': 0.1 + 0.2 } }],
      [{ evidence: { __proto__: 1, constructor: 2 } as unknown as Record<string, number> }],
      [{ severity: 'info', sourcePartition: 0, sourceOffset: 0, windowStart: 946_684_800_000 }],
      [{ severity: 'critical', sourcePartition: 2_147_483_647, sourceOffset: 9_007_199_254_740_990 }],
      [{ eventTime: 4_102_444_800_000, windowEnd: 4_102_444_800_000 }],
      [{}, { offset: '0', timestamp: '0', partition: 0 }],
      [{}, { offset: '9007199254740990', timestamp: '4294967295999' }],
    ];
    for (const [overrides, meta] of cases) {
      const input = record(framed(type.toBuffer(finding(overrides))), meta);
      expect(transcoded(input), JSON.stringify(overrides)).toEqual(generic(input));
    }
  });

  it('writes the JSON of a map whose blocks carry sizes and repeat a key as avsc + JSON.stringify do', () => {
    const fields = (type as avro.types.RecordType).fields;
    const value = finding() as unknown as Record<string, unknown>;
    const long = avro.Type.forSchema('long');
    const entry = (key: string, n: number): Buffer => {
      const d = Buffer.alloc(8);
      d.writeDoubleLE(n);
      return Buffer.concat([avro.Type.forSchema('string').toBuffer(key), d]);
    };
    const maps = [
      // a block of two with its byte size (negative count), then a block of one, then the end
      [[entry('a', 1.5), entry('zeta', -0)], [entry('b', 3)]],
      // the same key twice: the later value wins, in the first one's place
      [[entry('a', 1.5), entry('b', 2)], [entry('a', 2.5)]],
      // a key JSON must escape, and an array-index key that JS objects put first
      [[entry('x', 1), entry('q"t', 2), entry('7', 3)]],
    ];
    for (const blocks of maps) {
      const map = Buffer.concat([
        ...blocks.map((entries) => {
          const bytes = Buffer.concat(entries);
          return Buffer.concat([long.toBuffer(-entries.length), long.toBuffer(bytes.length), bytes]);
        }),
        long.toBuffer(0),
      ]);
      const body = Buffer.concat(fields.map((f) => (f.name === 'evidence' ? map : f.type.toBuffer(value[f.name]))));
      const input = record(framed(body));
      expect(transcoded(input)).toEqual(generic(input));
    }
  });

  it('copies invalid UTF-8 as avsc decodes it (U+FFFD), like the generic path', () => {
    const body = type.toBuffer(finding({ symbol: 'ABCD' }));
    const at = body.indexOf(Buffer.from('ABCD'));
    body[at + 1] = 0xff; // not UTF-8
    body[at + 2] = 0xc3; // a lead byte without its continuation
    const input = record(framed(body));
    const fast = transcoded(input);
    expect(fast).toEqual(generic(input));
    expect((fast as Buffer).includes(Buffer.from('\ufffd'))).toBe(true);
  });

  it('gives up on every record the generic path refuses or dead-letters', () => {
    const good = type.toBuffer(finding());
    const bad: Array<[string, Buffer | null, Partial<TranscodeInput>?]> = [
      ['out of range (windowStart)', type.toBuffer(finding({ windowStart: 1 }))],
      ['out of range (sourcePartition)', type.toBuffer(finding({ sourcePartition: -1 }))],
      ['NaN evidence', type.toBuffer(finding({ evidence: { z: Number.NaN } }))],
      ['infinite evidence', type.toBuffer(finding({ evidence: { z: Number.POSITIVE_INFINITY } }))],
      ['trailing byte', Buffer.concat([good, Buffer.from([0])])],
      ['truncated', good.subarray(0, good.length - 1)],
      ['empty body', Buffer.alloc(0)],
      ['offset past 2^53 (column)', good, { offset: '18446744073709551616' }],
      ['timestamp past DateTime', good, { timestamp: '4294967296000' }],
    ];
    // A bad enum index: severity ('high', index 3, zigzag 6) is the varint after the five short strings, each a
    // one-byte length and its bytes.
    const enumBad = Buffer.from(good);
    const at = ['f-1', 'price-move', 'drop-2m', 'AAPL', ''].reduce((n, text) => n + 1 + text.length, 0);
    expect(enumBad[at]).toBe(6);
    enumBad[at] = 10; // index 5: there are five symbols
    bad.push(['enum index out of range', enumBad]);
    for (const [why, body, meta] of bad) {
      const input = record(body === null ? Buffer.alloc(0) : framed(body), meta);
      expect(transcoded(input), why).toBe(false);
    }
    expect(transcoded(record(Buffer.from([1, 0, 0, 0, 7, ...good]))), 'magic byte').toBe(false);
    expect(() => type.fromBuffer(enumBad)).toThrow();
  });

  it('is not compiled for a writer schema without a declared field, or a mapping that misses a column', () => {
    const older = {
      ...(schema as { fields: Array<{ name: string }> }),
      fields: (schema as { fields: Array<{ name: string }> }).fields.filter((f) => f.name !== 'sourceOffset'),
    };
    expect(compileTranscoder(older, recordType, findingColumns, columns)).toBeUndefined();
    const partial = mapColumns('findings', { finding_id: { field: 'findingId' } });
    expect(compileTranscoder(schema, recordType, partial, columns)).toBeUndefined();
  });

  it('refuses a malformed declaration, naming the column', () => {
    expect(() => mapColumns('t', { a: { field: '' } })).toThrow(/a: field must be a field name/);
    expect(() => mapColumns('t', { a: { meta: 'nope' } as never })).toThrow(/a: meta must be/);
    expect(() => mapColumns('t', { a: { field: 'x', as: 'upper' } as never })).toThrow(/a: as must be/);
    expect(() => mapColumns('t', {})).toThrow(/no columns/);
  });
});
