/**
 * The writer's RowBinary encoding, value for value: rows of every column type the writer writes, with the values an
 * escaping format gets wrong (tabs, newlines, backslashes, quotes, NUL, multi-byte and astral characters, a lone
 * surrogate, strings at the one-byte-length boundary, integer extremes, NaN, -0, nulls, nested and empty arrays) go
 * in through `ClickHouseWriter` on the local ClickHouse 18.16, and through the same encoder into chdb (current
 * ClickHouse, which also has DateTime64 and LowCardinality), and are read back exactly: strings as hex of their
 * bytes, floats as their bytes, 64-bit integers as decimal strings.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClickHouseClient } from '@clickhouse/client';
import { openClickHouse } from '../../../sinks/clickhouse/client.ts';
import { quoteString } from '../../../sinks/clickhouse/params.ts';
import { codecFor, compileRowEncoder, RowBinaryBuilder } from '../../../sinks/clickhouse/row-binary.ts';
import { ClickHouseWriter } from '../../../sinks/clickhouse/writer.ts';
import { ErrorCode, type AgentStreamsError } from '../../../runtime/errors.ts';
import { config, uniqueName } from '../../support/stack.ts';

/** Columns both servers have. Enum names with a quote, a backslash and a non-ASCII letter test the type parser. */
const commonColumns = `
  id UInt32,
  s String,
  fs FixedString(8),
  u8 UInt8, u16 UInt16, u32 UInt32, u64 UInt64,
  i8 Int8, i16 Int16, i32 Int32, i64 Int64,
  f32 Float32, f64 Float64,
  dt DateTime('UTC'), dt_plain DateTime,
  e8 Enum8('it\\'s' = -128, 'back\\\\slash' = 0, 'ü' = 127),
  e16 Enum16('low' = -32768, 'high' = 32767),
  ns Nullable(String), nu Nullable(UInt64),
  arr_s Array(String), arr_n Array(Nullable(Int32)), arr_a Array(Array(String))`;

/** Every value read back in a form that compares exactly. */
const commonReadBack = `id, hex(s) AS s, hex(fs) AS fs, u8, u16, u32, toString(u64) AS u64, i8, i16, i32, toString(i64) AS i64,
  hex(reinterpretAsString(f32)) AS f32, hex(reinterpretAsString(f64)) AS f64,
  toUInt32(dt) AS dt, toUInt32(dt_plain) AS dt_plain, hex(toString(e8)) AS e8, toString(e16) AS e16,
  if(isNull(ns), 'NULL', hex(assumeNotNull(ns))) AS ns, if(isNull(nu), 'NULL', toString(assumeNotNull(nu))) AS nu,
  arrayMap(x -> hex(x), arr_s) AS arr_s, arrayMap(x -> if(isNull(x), 'NULL', toString(assumeNotNull(x))), arr_n) AS arr_n,
  arrayMap(a -> arrayMap(x -> hex(x), a), arr_a) AS arr_a`;

const nasty = [
  '',
  'tab\there',
  'new\nline\r\n',
  'back\\slash \\N \\t',
  `quotes ' " \``,
  'nul\0byte',
  '日本語テキスト',
  'emoji 😀 astral 𝄞',
  '\ud800 lone surrogate',
  'é'.repeat(42), // 84 bytes: the short path
  '€'.repeat(43), // 129 bytes: a two-byte length
  'a'.repeat(127),
  'a'.repeat(128),
  'x'.repeat(100_000),
  '{"json":"inside","n":[1,2]}',
];

const rows: Array<Record<string, unknown>> = [
  {
    id: 1,
    s: nasty.join('|'),
    fs: 'ab\tc',
    u8: 0,
    u16: 0,
    u32: 0,
    u64: 0,
    i8: -128,
    i16: -32768,
    i32: -2147483648,
    i64: -9223372036854775808n,
    f32: Number.NaN,
    f64: -0,
    dt: 0,
    dt_plain: 0,
    e8: "it's",
    e16: 'low',
    ns: null,
    nu: null,
    arr_s: nasty,
    arr_n: [null, -1, 2147483647, null],
    arr_a: [[], ['', 'a\tb'], ['\n']],
  },
  {
    id: 2,
    s: 'plain',
    fs: 'ü€ab',
    u8: 255,
    u16: 65535,
    u32: 4294967295,
    u64: 18446744073709551615n,
    i8: 127,
    i16: 32767,
    i32: 2147483647,
    i64: 9223372036854775807n,
    f32: 3.4028234663852886e38,
    f64: Number.POSITIVE_INFINITY,
    dt: 4294967295,
    dt_plain: 1767225600,
    e8: 'back\\slash',
    e16: 'high',
    ns: 'not null \t',
    nu: 18446744073709551615n,
    arr_s: [],
    arr_n: [],
    arr_a: [],
  },
  {
    id: 3,
    s: '\\',
    fs: '',
    u8: 1,
    u16: 300,
    u32: 70000,
    u64: Number.MAX_SAFE_INTEGER,
    i8: -1,
    i16: -300,
    i32: -70000,
    i64: Number.MIN_SAFE_INTEGER,
    f32: 0.1,
    f64: 5e-324,
    dt: 1767225659,
    dt_plain: 1,
    e8: 'ü',
    e16: 'low',
    ns: '',
    nu: 4294967296,
    arr_s: ['\ud83d'],
    arr_n: [0],
    arr_a: [['x'.repeat(300)]],
  },
];

const hex = (s: string): string => Buffer.from(s, 'utf8').toString('hex').toUpperCase();
const fixed = (s: string, size: number): string => {
  const bytes = Buffer.alloc(size);
  Buffer.from(s, 'utf8').copy(bytes);
  return bytes.toString('hex').toUpperCase();
};
/** A float's little-endian bytes in hex, without trailing zero bytes (as `hex(reinterpretAsString(x))` shows them). */
function bits(value: number, size: 4 | 8): string {
  const bytes = Buffer.alloc(size);
  if (size === 4) bytes.writeFloatLE(value);
  else bytes.writeDoubleLE(value);
  let end = size;
  while (end > 0 && bytes[end - 1] === 0) end -= 1;
  return bytes.subarray(0, end).toString('hex').toUpperCase();
}

/** What the read-back query must return for `row`. */
function expected(r: Record<string, unknown>): Record<string, unknown> {
  const str = (k: string): string => r[k] as string;
  const num = (k: string): number => r[k] as number;
  return {
    id: r.id,
    s: hex(str('s')),
    fs: fixed(str('fs'), 8),
    u8: r.u8,
    u16: r.u16,
    u32: r.u32,
    u64: String(r.u64),
    i8: r.i8,
    i16: r.i16,
    i32: r.i32,
    i64: String(r.i64),
    f32: bits(num('f32'), 4),
    f64: bits(num('f64'), 8),
    dt: r.dt,
    dt_plain: r.dt_plain,
    e8: hex(str('e8')),
    e16: r.e16,
    ns: r.ns === null ? 'NULL' : hex(str('ns')),
    nu: r.nu === null ? 'NULL' : String(r.nu),
    arr_s: (r.arr_s as string[]).map(hex),
    arr_n: (r.arr_n as Array<number | null>).map((x) => (x === null ? 'NULL' : String(x))),
    arr_a: (r.arr_a as string[][]).map((a) => a.map(hex)),
  };
}

describe('RowBinary round trip on the local ClickHouse 18.16, through ClickHouseWriter', () => {
  const database = uniqueName('as_rowbinary');
  let client: ClickHouseClient;

  beforeAll(async () => {
    const server = openClickHouse(config, { database: null });
    await server.command({ query: `CREATE DATABASE IF NOT EXISTS ${database}` });
    await server.close();
    client = openClickHouse({ ...config, clickhouse: { ...config.clickhouse, database } });
    await client.command({ query: `CREATE TABLE every_type (${commonColumns}) ENGINE = MergeTree ORDER BY id` });
  });
  afterAll(async () => {
    await client?.command({ query: `DROP DATABASE IF EXISTS ${database}` });
    await client?.close();
  });

  it('writes every column type with hostile values and reads back exactly the same bytes and bits', async () => {
    const writer = await ClickHouseWriter.open({ client, tables: ['every_type'] });
    // One row per write, and all rows in one write: the same bytes either way.
    writer.write('every_type', [rows[0]!]);
    writer.write('every_type', rows.slice(1));
    await writer.close();
    expect(writer.stats.rowsInserted).toBe(3);
    const back = await (
      await client.query({ query: `SELECT ${commonReadBack} FROM every_type ORDER BY id`, format: 'JSONEachRow' })
    ).json<Record<string, unknown>>();
    expect(back).toEqual(rows.map(expected));
  });

  it('refuses, at write time and naming the column, a value that does not fit its type', async () => {
    const writer = await ClickHouseWriter.open({ client, tables: ['every_type'] });
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ u8: 256 }, /column "u8" \(UInt8\): expected a whole number from 0 to 255, got 256/],
      [{ u64: -1 }, /column "u64" \(UInt64\): expected a whole number from 0/],
      [{ u64: 2 ** 64 }, /column "u64"/],
      [{ i64: 1.5 }, /column "i64"/],
      [{ s: 12 }, /column "s" \(String\): expected a string, got 12/],
      [{ fs: 'ninebytes' }, /column "fs" \(FixedString\(8\)\): expected at most 8 bytes of UTF-8, got 9/],
      [{ f64: '1.5' }, /column "f64" \(Float64\): expected a number/],
      [{ dt: 1.5 }, /column "dt" is a DateTime: send whole epoch seconds, got 1.5/],
      [{ dt: new Date() }, /column "dt" is a DateTime: send whole epoch seconds, got a Date/],
      [{ e8: 'nope' }, /column "e8" \(Enum8\(.*\)\): expected one of "it's", "back\\\\slash", "ü", got "nope"/],
      [{ e8: 0 }, /column "e8"/],
      [{ arr_s: 'not an array' }, /column "arr_s" \(Array\(String\)\): expected an array/],
      [{ arr_s: ['ok', 3] }, /column "arr_s" \(Array\(String\)\): element 1: expected a string, got 3/],
      [{ arr_s: [null] }, /element 0 is null but the elements are not Nullable/],
      [{ arr_a: [['ok'], 'flat'] }, /column "arr_a" .*element 1: expected an array/],
      [{ s: null }, /column "s" is null but not Nullable/],
      [{ ns: 7 }, /column "ns" \(Nullable\(String\)\): expected a string, got 7/],
    ];
    for (const [change, message] of bad) {
      // A good row first in the same write: the write is all or none.
      const write = (): void => writer.write('every_type', [rows[2]!, { ...rows[1]!, ...change }]);
      expect(
        write,
        JSON.stringify(change, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v)),
      ).toThrow(message);
      try {
        write();
      } catch (error) {
        expect((error as AgentStreamsError).code).toBe(ErrorCode.SINK_ROW_INVALID);
      }
      expect(writer.buffered).toEqual({ rows: 0, bytes: 0 });
    }
    const throwing = Object.defineProperty({ ...rows[2]! }, 's', {
      enumerable: true,
      get: () => {
        throw new Error('getter refused');
      },
    });
    expect(() => writer.write('every_type', [throwing])).toThrow(/could not be read \(getter refused\)/);
    writer.write('every_type', [{ ...rows[2]!, id: 4 }]);
    await writer.close();
    expect(writer.stats.rowsInserted).toBe(1);
  });

  it('refuses to open a table with a column type it cannot encode, naming it', async () => {
    await client.command({ query: 'CREATE TABLE odd (id UInt32, d Date, u UUID) ENGINE = MergeTree ORDER BY id' });
    await expect(ClickHouseWriter.open({ client, tables: ['odd'] })).rejects.toThrow(
      /cannot write column\(s\) odd\.d Date, odd\.u UUID/,
    );
  });
});

describe('RowBinary round trip on current ClickHouse (chdb), through the same encoder', () => {
  const { Session } = createRequire(import.meta.url)('chdb') as {
    Session: new (path: string) => { query(sql: string, format?: string): string; close(): void };
  };
  const dir = mkdtempSync(join(tmpdir(), 'as-chdb-rowbinary-'));
  const session = new Session(dir);
  afterAll(() => {
    session.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes every column type (and DateTime64, LowCardinality) and reads back exactly', () => {
    session.query('CREATE DATABASE IF NOT EXISTS rb');
    session.query(
      `CREATE TABLE rb.every_type (${commonColumns}, dt64 DateTime64(3, 'UTC'), dt64_6 DateTime64(6), dt64_0 DateTime64(0),
        lc LowCardinality(String), lcn LowCardinality(Nullable(String))) ENGINE = MergeTree ORDER BY id`,
    );
    const columns = session
      .query(`SELECT name, type FROM system.columns WHERE database = 'rb' AND table = 'every_type'`, 'JSONEachRow')
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as { name: string; type: string })
      .map(({ name, type }) => ({ name, type, codec: codecFor(type)! }));
    expect(columns.filter((c) => !c.codec).map((c) => c.type)).toEqual([]);
    const encode = compileRowEncoder(columns);
    const extra = [
      { dt64: 1767225600123, dt64_6: -1000, dt64_0: 1767225600000, lc: nasty[1], lcn: null },
      { dt64: 0, dt64_6: 4102444800000, dt64_0: 0, lc: '', lcn: 'x\ny' },
      { dt64: -1, dt64_6: 1, dt64_0: -86400000, lc: nasty[7], lcn: '' },
    ];
    const out = new RowBinaryBuilder(64);
    rows.forEach((row, i) => {
      expect(encode({ ...row, ...extra[i] }, out)).toBe(true);
      out.endRow();
    });
    const file = join(dir, 'rows.bin');
    writeFileSync(file, Buffer.concat(out.take().parts));
    const structure = columns.map((c) => `${c.name} ${c.type}`).join(', ');
    session.query(
      `INSERT INTO rb.every_type SELECT * FROM file(${quoteString(file)}, 'RowBinary', ${quoteString(structure)})`,
    );
    const back = session
      .query(
        `SELECT ${commonReadBack}, toString(toUnixTimestamp64Milli(dt64)) AS dt64, toString(toUnixTimestamp64Micro(dt64_6)) AS dt64_6,
          toString(toUnixTimestamp64Milli(dt64_0)) AS dt64_0, hex(lc) AS lc, if(isNull(lcn), 'NULL', hex(assumeNotNull(lcn))) AS lcn
         FROM rb.every_type ORDER BY id SETTINGS output_format_json_quote_64bit_integers = 0`,
        'JSONEachRow',
      )
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(back).toEqual(
      rows.map((row, i) => ({
        ...expected(row),
        dt64: String(extra[i]!.dt64),
        dt64_6: String(extra[i]!.dt64_6 * 1000),
        dt64_0: String(extra[i]!.dt64_0),
        lc: hex(extra[i]!.lc!),
        lcn: extra[i]!.lcn === null ? 'NULL' : hex(extra[i]!.lcn),
      })),
    );
  });
});
