/**
 * RowBinary, the insert encoding of `ClickHouseWriter`: every value in its binary form, strings length-prefixed, so
 * nothing is escaped and the server parses nothing but lengths. Both ClickHouse 18.16 and current releases take it
 * (`INSERT INTO t (columns) FORMAT RowBinary`); the values must come in exactly the order of the named columns and
 * with exactly the columns' types, which is why every table column gets a codec here, from its type in
 * `system.columns`, and a value that does not fit its column is refused at write time, naming the column.
 *
 * Rows are encoded straight into large chunks (no string or Buffer per row); a row's bytes are found again through
 * the cumulative row ends, which is all that the (rare) isolation of a refused row needs. A refused row is decoded
 * back to a plain object, so its error can show it.
 *
 * Value conventions (docs/clickhouse-sink.md): DateTime takes whole epoch seconds; DateTime64(P) whole epoch
 * milliseconds (any sub-millisecond digits are zero); Enum takes its element's name; 64-bit integers take a safe
 * integer or a bigint; String takes any JS string (a lone UTF-16 surrogate becomes U+FFFD, as in any UTF-8 encoding).
 */

/** Why a value does not fit its column; the writer turns it into `AS_SINK_ROW_INVALID` with the row. */
export class ValueInvalid {
  constructor(readonly why: string) {}
}

/** The output of one batch: chunks whose concatenation is the body, and where each row ends in it. */
export interface EncodedRows {
  parts: Buffer[];
  /** `rowEnds[i]` is the byte offset in the body where row `i` ends (row `i` starts where row `i - 1` ends). */
  rowEnds: number[];
}

const CHUNK_BYTES = 1024 * 1024;
const TWO_32 = 4_294_967_296;

/**
 * Rows of one table, encoded as they are written. `begin()` marks the start of a write, `rollback()` forgets what was
 * encoded since (a bad row, or backpressure), `endRow()` records a row's end, `take()` hands the rows over.
 */
export class RowBinaryBuilder {
  buf: Buffer;
  pos = 0;
  /** Where the rows not yet taken start in `buf`. */
  private openStart = 0;
  /** Where the current write started in `buf`. */
  private writeStart = 0;
  private writeRows = 0;
  private parts: Buffer[] = [];
  private partsBytes = 0;
  private rowEnds: number[] = [];

  constructor(private readonly chunkBytes = CHUNK_BYTES) {
    this.buf = Buffer.allocUnsafe(chunkBytes);
  }

  /** Rows and bytes encoded and not yet taken. */
  get rows(): number {
    return this.rowEnds.length;
  }

  get bytes(): number {
    return this.partsBytes + this.pos - this.openStart;
  }

  begin(): void {
    this.writeStart = this.pos;
    this.writeRows = this.rowEnds.length;
  }

  rollback(): void {
    this.pos = this.writeStart;
    this.rowEnds.length = this.writeRows;
  }

  endRow(): void {
    this.rowEnds.push(this.partsBytes + this.pos - this.openStart);
  }

  take(): EncodedRows {
    if (this.pos > this.openStart) this.parts.push(this.buf.subarray(this.openStart, this.pos));
    const taken = { parts: this.parts, rowEnds: this.rowEnds };
    this.parts = [];
    this.rowEnds = [];
    this.partsBytes = 0;
    this.openStart = this.writeStart = this.pos;
    return taken;
  }

  /** Room for `n` more bytes; a new chunk takes over the current write's bytes, the earlier rows stay as a part. */
  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const carried = this.pos - this.writeStart;
    const next = Buffer.allocUnsafe(Math.max(this.chunkBytes, 2 * (carried + n)));
    this.buf.copy(next, 0, this.writeStart, this.pos);
    if (this.writeStart > this.openStart) {
      this.parts.push(this.buf.subarray(this.openStart, this.writeStart));
      this.partsBytes += this.writeStart - this.openStart;
    }
    this.buf = next;
    this.openStart = this.writeStart = 0;
    this.pos = carried;
  }

  varint(n: number): void {
    this.ensure(10);
    const buf = this.buf;
    let p = this.pos;
    while (n >= 0x80) {
      buf[p++] = (n & 0x7f) | 0x80;
      n = Math.floor(n / 128);
    }
    buf[p++] = n;
    this.pos = p;
  }

  string(s: string): void {
    const n = s.length;
    if (n < 43) {
      // At most 126 bytes of UTF-8, so the length is one byte, written after the characters.
      this.ensure(1 + 3 * n);
      const buf = this.buf;
      const start = this.pos + 1;
      let p = start;
      for (let i = 0; i < n; i += 1) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) {
          p = start + buf.write(s, start, 'utf8');
          break;
        }
        buf[p++] = c;
      }
      buf[start - 1] = p - start;
      this.pos = p;
      return;
    }
    const bytes = Buffer.byteLength(s, 'utf8');
    this.varint(bytes);
    this.ensure(bytes);
    this.pos += this.buf.write(s, this.pos, 'utf8');
  }

  u8(n: number): void {
    this.ensure(1);
    this.buf[this.pos++] = n;
  }

  /** Two's complement little-endian, `bytes` of 1, 2, 4 or 8; `n` is in range (checked by the codec). */
  int(n: number, bytes: number): void {
    this.ensure(8);
    const buf = this.buf;
    if (bytes === 8) {
      const hi = Math.floor(n / TWO_32);
      buf.writeUInt32LE(n - hi * TWO_32, this.pos);
      buf.writeInt32LE(hi | 0, this.pos + 4);
    } else if (bytes === 4) {
      buf.writeUInt32LE(n >>> 0, this.pos);
    } else if (bytes === 2) {
      buf.writeUInt16LE(n & 0xffff, this.pos);
    } else {
      buf[this.pos] = n & 0xff;
    }
    this.pos += bytes;
  }

  bigint(n: bigint): void {
    this.ensure(8);
    this.buf.writeBigUInt64LE(BigInt.asUintN(64, n), this.pos);
    this.pos += 8;
  }

  float(n: number, bytes: 4 | 8): void {
    this.ensure(8);
    if (bytes === 8) this.buf.writeDoubleLE(n, this.pos);
    else this.buf.writeFloatLE(n, this.pos);
    this.pos += bytes;
  }

  raw(bytes: Buffer): void {
    this.ensure(bytes.length);
    bytes.copy(this.buf, this.pos);
    this.pos += bytes.length;
  }
}

/** Reads rows back (refused rows, for their error): the mirror of the codecs' `write`. */
export class RowBinaryReader {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  varint(): number {
    let n = 0;
    let scale = 1;
    for (;;) {
      const b = this.byte();
      n += (b & 0x7f) * scale;
      if (b < 0x80) return n;
      scale *= 128;
    }
  }

  byte(): number {
    if (this.pos >= this.buf.length) throw new RangeError('RowBinary row ends early');
    return this.buf[this.pos++]!;
  }

  take(n: number): Buffer {
    if (this.pos + n > this.buf.length) throw new RangeError('RowBinary row ends early');
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
}

export interface Codec {
  /** The column's type as the server names it. */
  type: string;
  /** Whether it takes `null` (Nullable, or LowCardinality of a Nullable). */
  nullable: boolean;
  /** Encodes `value` or throws `ValueInvalid`. */
  write(out: RowBinaryBuilder, value: unknown): void;
  read(input: RowBinaryReader): unknown;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
  if (typeof value === 'bigint') return `${value}n`;
  if (value === null || typeof value !== 'object') return String(value);
  return Array.isArray(value) ? 'an array' : value instanceof Date ? 'a Date' : 'an object';
}

const intTypes: Record<string, { bytes: 1 | 2 | 4 | 8; signed: boolean }> = {
  UInt8: { bytes: 1, signed: false },
  UInt16: { bytes: 2, signed: false },
  UInt32: { bytes: 4, signed: false },
  UInt64: { bytes: 8, signed: false },
  Int8: { bytes: 1, signed: true },
  Int16: { bytes: 2, signed: true },
  Int32: { bytes: 4, signed: true },
  Int64: { bytes: 8, signed: true },
};

function intCodec(type: string, bytes: 1 | 2 | 4 | 8, signed: boolean): Codec {
  const bits = BigInt(bytes * 8);
  const minBig = signed ? -(1n << (bits - 1n)) : 0n;
  const maxBig = signed ? (1n << (bits - 1n)) - 1n : (1n << bits) - 1n;
  const min = bytes === 8 ? (signed ? Number.MIN_SAFE_INTEGER : 0) : Number(minBig);
  const max = bytes === 8 ? Number.MAX_SAFE_INTEGER : Number(maxBig);
  const expected =
    bytes === 8
      ? `a whole number from ${min} to ${max}, or a bigint from ${minBig} to ${maxBig}`
      : `a whole number from ${min} to ${max}`;
  return {
    type,
    nullable: false,
    write(out, value) {
      if (typeof value === 'number') {
        if (!(Number.isInteger(value) && value >= min && value <= max))
          throw new ValueInvalid(`expected ${expected}, got ${describe(value)}`);
        out.int(value, bytes);
      } else if (typeof value === 'bigint' && bytes === 8 && value >= minBig && value <= maxBig) {
        out.bigint(value);
      } else {
        throw new ValueInvalid(`expected ${expected}, got ${describe(value)}`);
      }
    },
    read(input) {
      const b = input.take(bytes);
      if (bytes === 8) {
        const n = signed ? b.readBigInt64LE(0) : b.readBigUInt64LE(0);
        return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
      }
      return signed ? b.readIntLE(0, bytes) : b.readUIntLE(0, bytes);
    },
  };
}

function floatCodec(type: string, bytes: 4 | 8): Codec {
  return {
    type,
    nullable: false,
    write(out, value) {
      if (typeof value !== 'number') throw new ValueInvalid(`expected a number, got ${describe(value)}`);
      out.float(value, bytes);
    },
    read(input) {
      const b = input.take(bytes);
      return bytes === 8 ? b.readDoubleLE(0) : b.readFloatLE(0);
    },
  };
}

const stringCodec: Codec = {
  type: 'String',
  nullable: false,
  write(out, value) {
    if (typeof value !== 'string') throw new ValueInvalid(`expected a string, got ${describe(value)}`);
    out.string(value);
  },
  read(input) {
    return input.take(input.varint()).toString('utf8');
  },
};

function fixedStringCodec(type: string, size: number): Codec {
  return {
    type,
    nullable: false,
    write(out, value) {
      if (typeof value !== 'string') throw new ValueInvalid(`expected a string, got ${describe(value)}`);
      const bytes = Buffer.from(value, 'utf8');
      if (bytes.length > size)
        throw new ValueInvalid(`expected at most ${size} bytes of UTF-8, got ${bytes.length} (${describe(value)})`);
      out.raw(bytes);
      out.ensure(size - bytes.length);
      out.buf.fill(0, out.pos, out.pos + size - bytes.length);
      out.pos += size - bytes.length;
    },
    read(input) {
      const bytes = input.take(size);
      let end = size;
      while (end > 0 && bytes[end - 1] === 0) end -= 1;
      return bytes.subarray(0, end).toString('utf8');
    },
  };
}

function dateTimeCodec(type: string): Codec {
  return {
    type,
    nullable: false,
    write(out, value) {
      if (!(typeof value === 'number' && Number.isInteger(value) && value >= 0 && value < TWO_32))
        throw new ValueInvalid(`is a DateTime: send whole epoch seconds, got ${describe(value)}`);
      out.int(value, 4);
    },
    read(input) {
      return input.take(4).readUInt32LE(0);
    },
  };
}

function dateTime64Codec(type: string, precision: number): Codec {
  // Ticks per millisecond (precision ≥ 3) or milliseconds per tick (precision < 3).
  const up = 10 ** Math.max(0, precision - 3);
  const down = 10 ** Math.max(0, 3 - precision);
  const why = `is a ${type}: send whole epoch milliseconds${down > 1 ? ` (a multiple of ${down})` : ''}`;
  return {
    type,
    nullable: false,
    write(out, value) {
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value % down !== 0)
        throw new ValueInvalid(`${why}, got ${describe(value)}`);
      if (up === 1) {
        out.int(value / down, 8);
        return;
      }
      const ticks = BigInt(value) * BigInt(up);
      if (ticks > 0x7fffffffffffffffn || ticks < -0x8000000000000000n)
        throw new ValueInvalid(`${why} within its range, got ${describe(value)}`);
      out.bigint(ticks);
    },
    read(input) {
      const ticks = input.take(8).readBigInt64LE(0);
      return up === 1 ? Number(ticks) * down : Number(ticks / BigInt(up));
    },
  };
}

/** `'a' = 1, 'b\'c' = -2` → names and values. */
function enumElements(body: string): Map<string, number> {
  const elements = new Map<string, number>();
  const element = /\s*'((?:[^'\\]|\\.)*)'\s*=\s*(-?\d+)\s*(,|$)/y;
  let match: RegExpExecArray | null;
  while (element.lastIndex < body.length && (match = element.exec(body)) !== null) {
    const name = match[1]!.replace(/\\(.)/g, (_all, c: string) => ({ n: '\n', t: '\t', r: '\r', '0': '\0' })[c] ?? c);
    elements.set(name, Number(match[2]));
  }
  if (element.lastIndex !== body.length) throw new Error(`cannot read the elements of Enum(${body})`);
  return elements;
}

function enumCodec(type: string, bytes: 1 | 2, elements: Map<string, number>): Codec {
  const names = new Map([...elements].map(([name, value]) => [value, name]));
  const list = [...elements.keys()].map((name) => JSON.stringify(name)).join(', ');
  return {
    type,
    nullable: false,
    write(out, value) {
      const n = typeof value === 'string' ? elements.get(value) : undefined;
      if (n === undefined) throw new ValueInvalid(`expected one of ${list}, got ${describe(value)}`);
      out.int(n, bytes);
    },
    read(input) {
      const b = input.take(bytes);
      const n = bytes === 1 ? b.readInt8(0) : b.readInt16LE(0);
      return names.get(n) ?? n;
    },
  };
}

function nullableCodec(type: string, inner: Codec): Codec {
  return {
    type,
    nullable: true,
    write(out, value) {
      if (value === null) {
        out.u8(1);
        return;
      }
      out.u8(0);
      inner.write(out, value);
    },
    read(input) {
      return input.byte() === 1 ? null : inner.read(input);
    },
  };
}

function arrayCodec(type: string, inner: Codec): Codec {
  return {
    type,
    nullable: false,
    write(out, value) {
      if (!Array.isArray(value)) throw new ValueInvalid(`expected an array, got ${describe(value)}`);
      out.varint(value.length);
      for (let i = 0; i < value.length; i += 1) {
        const item: unknown = value[i];
        if (item === null && !inner.nullable)
          throw new ValueInvalid(`element ${i} is null but the elements are not Nullable`);
        try {
          inner.write(out, item);
        } catch (error) {
          if (error instanceof ValueInvalid) throw new ValueInvalid(`element ${i}: ${error.why}`);
          throw error;
        }
      }
    },
    read(input) {
      const n = input.varint();
      const items: unknown[] = [];
      for (let i = 0; i < n; i += 1) items.push(inner.read(input));
      return items;
    },
  };
}

/** The codec for a column type as `system.columns` names it, or undefined when the writer cannot write that type. */
export function codecFor(type: string): Codec | undefined {
  const int = intTypes[type];
  if (int) return intCodec(type, int.bytes, int.signed);
  if (type === 'Float32' || type === 'Float64') return floatCodec(type, type === 'Float32' ? 4 : 8);
  if (type === 'String') return stringCodec;
  if (/^DateTime(\('[^']*'\))?$/.test(type)) return dateTimeCodec(type);
  const wrapped = /^(Nullable|Array|LowCardinality|FixedString|DateTime64|Enum8|Enum16)\((.*)\)$/s.exec(type);
  if (!wrapped) return undefined;
  const [, kind, body] = wrapped as unknown as [string, string, string];
  switch (kind) {
    case 'Nullable':
    case 'Array': {
      const inner = codecFor(body);
      if (!inner) return undefined;
      return kind === 'Nullable' ? nullableCodec(type, inner) : arrayCodec(type, inner);
    }
    case 'LowCardinality': {
      // On the wire (RowBinary) a LowCardinality column is its inner type.
      const inner = codecFor(body);
      return inner && { ...inner, type };
    }
    case 'FixedString':
      return /^\d+$/.test(body) ? fixedStringCodec(type, Number(body)) : undefined;
    case 'DateTime64': {
      const precision = /^(\d)\s*(,\s*'[^']*')?$/.exec(body)?.[1];
      return precision === undefined ? undefined : dateTime64Codec(type, Number(precision));
    }
    default:
      try {
        return enumCodec(type, kind === 'Enum8' ? 1 : 2, enumElements(body));
      } catch {
        return undefined;
      }
  }
}

/** The body bytes of rows `from` (inclusive) to `to` (exclusive) of `rows`, as slices of its parts. */
export function sliceRows(rows: EncodedRows, from: number, to: number): Buffer[] {
  const start = from === 0 ? 0 : rows.rowEnds[from - 1]!;
  const end = rows.rowEnds[to - 1]!;
  const out: Buffer[] = [];
  let offset = 0;
  for (const part of rows.parts) {
    const partEnd = offset + part.length;
    if (partEnd > start && offset < end)
      out.push(part.subarray(Math.max(0, start - offset), Math.min(part.length, end - offset)));
    offset = partEnd;
    if (offset >= end) break;
  }
  return out;
}

/** Encodes one row into `out`; false (or a `ValueInvalid` thrown) when it does not fit, which the caller then explains. */
export type RowEncoder = (row: Readonly<Record<string, unknown>>, out: RowBinaryBuilder) => boolean;

/**
 * A row encoder for these columns, in this order: one property read and one codec call per column, each at its own
 * call site. A loop over the columns would share one call site among all codecs and read the row's properties by
 * variable key, which made it about 2.5× slower than the generated function (and no faster than JSON.stringify).
 */
export function compileRowEncoder(columns: ReadonlyArray<{ name: string; codec: Codec }>): RowEncoder {
  const body = columns
    .map(
      (column, i) =>
        `v = row[${JSON.stringify(column.name)}];\nif (v === undefined${column.codec.nullable ? '' : ' || v === null'}) return false;\nc${i}.write(out, v);\n`,
    )
    .join('');
  const source = `'use strict';\n${columns.map((_c, i) => `const c${i} = C[${i}];\n`).join('')}return function encodeRow(row, out) {\nlet v;\n${body}return true;\n};`;
  // eslint-disable-next-line no-new-func -- generated from the table's column list only; names enter as JSON literals
  return new Function('C', source)(columns.map((c) => c.codec)) as RowEncoder;
}
