/**
 * Bounded Avro decoding. avsc trusts every length and count a body declares: a 12-byte record that declares an
 * array of 500 million strings makes it allocate them, and the member dies of heap exhaustion (again on every
 * restart, since the record is still there). Before avsc sees a body, a validating skipper compiled from the
 * writer schema walks it without allocating and checks each declared length, count, index and varint against the
 * bytes actually present. Items whose encoding can take no bytes at all (null, an empty record) are not bounded
 * by the bytes, so their number per record has a cap of its own; so has nesting depth (recursive schemas).
 *
 * The schema is read from its JSON (not from an avsc Type) because the JSON also carries the custom attributes
 * that `ranges.ts` compiles; both use the schema graph parsed here.
 */

export interface BoundsLimits {
  /** Deepest nesting of records a body may have (only recursive schemas can nest without bound). */
  maxDepth: number;
  /** Most items per record whose encoding can take 0 bytes (nulls, empty records): bytes do not bound their count. */
  maxZeroByteItems: number;
}

export const defaultBoundsLimits: BoundsLimits = { maxDepth: 64, maxZeroByteItems: 100_000 };

/** A body that does not fit its writer schema; `offset` is where in the body (after the wire header) it failed. */
export class BoundsViolation extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message);
    this.name = 'BoundsViolation';
  }
}

// ---- The schema graph ------------------------------------------------------------------------------------------

export type Primitive = 'null' | 'boolean' | 'int' | 'long' | 'float' | 'double' | 'bytes' | 'string';

export interface FieldNode {
  name: string;
  type: SchemaNode;
  /** Custom attributes of the field (everything but name, type, doc, default, order, aliases). */
  attributes: Record<string, unknown>;
}

export type SchemaNode =
  | { kind: Primitive }
  | { kind: 'record'; name: string; fields: FieldNode[] }
  | { kind: 'enum'; name: string; symbols: number }
  | { kind: 'fixed'; name: string; size: number }
  | { kind: 'array'; items: SchemaNode }
  | { kind: 'map'; values: SchemaNode }
  | { kind: 'union'; branches: SchemaNode[] };

const primitives = new Set<string>(['null', 'boolean', 'int', 'long', 'float', 'double', 'bytes', 'string']);
const standardFieldKeys = new Set(['name', 'type', 'doc', 'default', 'order', 'aliases']);

function schemaError(message: string): Error {
  return new Error(`Invalid Avro schema: ${message}`);
}

/** Parses Avro schema JSON into a graph of nodes; named types are shared, so recursive schemas become cycles. */
export function parseSchemaGraph(schema: unknown): SchemaNode {
  const named = new Map<string, SchemaNode>();
  const fullName = (name: string, namespace: string | undefined): string =>
    name.includes('.') || !namespace ? name : `${namespace}.${name}`;
  const namespaceOf = (name: string, declared: unknown, enclosing: string | undefined): string | undefined =>
    name.includes('.')
      ? name.slice(0, name.lastIndexOf('.'))
      : typeof declared === 'string'
        ? declared || undefined
        : enclosing;

  const parse = (s: unknown, namespace: string | undefined): SchemaNode => {
    if (typeof s === 'string') {
      if (primitives.has(s)) return { kind: s as Primitive };
      const found = named.get(fullName(s, namespace)) ?? named.get(s);
      if (!found) throw schemaError(`type "${s}" is not defined before its use.`);
      return found;
    }
    if (Array.isArray(s)) return { kind: 'union', branches: s.map((b) => parse(b, namespace)) };
    if (s === null || typeof s !== 'object') throw schemaError(`${JSON.stringify(s)} is not a type.`);
    const o = s as Record<string, unknown>;
    const type = o.type;
    if (typeof type === 'string' && primitives.has(type)) return { kind: type as Primitive };
    if (type === 'record' || type === 'error' || type === 'enum' || type === 'fixed') {
      if (typeof o.name !== 'string') throw schemaError(`a ${type} needs a name.`);
      const ns = namespaceOf(o.name, o.namespace, namespace);
      const name = fullName(o.name, ns);
      if (type === 'enum') {
        if (!Array.isArray(o.symbols)) throw schemaError(`enum ${name} has no symbols.`);
        const node: SchemaNode = { kind: 'enum', name, symbols: o.symbols.length };
        named.set(name, node);
        return node;
      }
      if (type === 'fixed') {
        if (typeof o.size !== 'number' || !Number.isInteger(o.size) || o.size < 0)
          throw schemaError(`fixed ${name} has no valid size.`);
        const node: SchemaNode = { kind: 'fixed', name, size: o.size };
        named.set(name, node);
        return node;
      }
      // Registered before its fields, so that a field may refer to the record itself.
      const node: SchemaNode = { kind: 'record', name, fields: [] };
      named.set(name, node);
      if (!Array.isArray(o.fields)) throw schemaError(`record ${name} has no fields.`);
      for (const f of o.fields as Array<Record<string, unknown>>) {
        if (typeof f?.name !== 'string') throw schemaError(`a field of ${name} has no name.`);
        const attributes: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(f)) if (!standardFieldKeys.has(k)) attributes[k] = v;
        node.fields.push({ name: f.name, type: parse(f.type, ns), attributes });
      }
      return node;
    }
    if (type === 'array') return { kind: 'array', items: parse(o.items, namespace) };
    if (type === 'map') return { kind: 'map', values: parse(o.values, namespace) };
    return parse(type, namespace);
  };
  return parse(schema, undefined);
}

/** Fewest bytes a value of `node` can take. A lower bound: a record met again while measuring counts 0. */
function minBytes(node: SchemaNode, visiting = new Set<SchemaNode>()): number {
  switch (node.kind) {
    case 'null':
      return 0;
    case 'float':
      return 4;
    case 'double':
      return 8;
    case 'fixed':
      return node.size;
    case 'union':
      return 1 + Math.min(...node.branches.map((b) => minBytes(b, visiting)));
    case 'record': {
      if (visiting.has(node)) return 0;
      visiting.add(node);
      const total = node.fields.reduce((n, f) => n + minBytes(f.type, visiting), 0);
      visiting.delete(node);
      return total;
    }
    default:
      // boolean, int, long, enum: one byte at least; bytes and string: their length; array and map: the end block.
      return 1;
  }
}

// ---- The skipper -----------------------------------------------------------------------------------------------
//
// The skipper is generated JavaScript, one straight-line function per record type (as avsc generates its readers):
// closures per node cost more than the decoding they guard. Labels and names are passed in, never spliced into
// the source, so a schema cannot inject code; the helpers below do the reading and word the errors.

const where = (label: string): string => (label ? ` (field ${label})` : '');

/** The value of the last varint read (the helpers return the new position). */
let varintValue = 0;

/** Reads a zig-zag varint of at most `maxBytes` that must end inside the body. Precise up to 2^53, which suffices to compare. */
function readVarint(buf: Buffer, start: number, maxBytes: number, what: string, label: string): number {
  let pos = start;
  const first = buf[pos];
  if (first !== undefined && first < 0x80) {
    varintValue = first & 1 ? -(first + 1) / 2 : first / 2;
    return pos + 1;
  }
  let n = 0;
  let scale = 1;
  let b: number;
  do {
    if (pos >= buf.length)
      throw new BoundsViolation(
        `${what} at offset ${start} runs past the end of the ${buf.length}-byte body${where(label)}`,
        start,
      );
    if (pos - start === maxBytes)
      throw new BoundsViolation(
        `${what} at offset ${start} is a varint longer than ${maxBytes} bytes${where(label)}`,
        start,
      );
    b = buf[pos++]!;
    n += (b & 0x7f) * scale;
    scale *= 128;
  } while (b & 0x80);
  varintValue = n % 2 === 0 ? n / 2 : -(n + 1) / 2;
  return pos;
}

function readInt(buf: Buffer, start: number, what: string, label: string): number {
  const pos = readVarint(buf, start, 5, what, label);
  if (varintValue > 2147483647 || varintValue < -2147483648)
    throw new BoundsViolation(
      `${what} ${varintValue} at offset ${start} does not fit a 32-bit int${where(label)}`,
      start,
    );
  return pos;
}

function skipFixed(buf: Buffer, pos: number, bytes: number, what: string, label: string): number {
  const left = buf.length - pos;
  if (bytes > left)
    throw new BoundsViolation(`${what} needs ${bytes} bytes but ${left} are left at offset ${pos}${where(label)}`, pos);
  return pos + bytes;
}

function skipBoolean(buf: Buffer, pos: number, label: string): number {
  const b = buf[pos];
  if (b === undefined)
    throw new BoundsViolation(`boolean needs 1 byte but 0 are left at offset ${pos}${where(label)}`, pos);
  if (b > 1) throw new BoundsViolation(`boolean byte ${b} at offset ${pos} is neither 0 nor 1${where(label)}`, pos);
  return pos + 1;
}

function skipLength(buf: Buffer, at: number, what: string, label: string): number {
  const pos = readVarint(buf, at, 10, what, label);
  const length = varintValue;
  const left = buf.length - pos;
  if (length < 0) throw new BoundsViolation(`${what} ${length} at offset ${at} is negative${where(label)}`, at);
  if (length > left)
    throw new BoundsViolation(`${what} ${length} exceeds the ${left} bytes left at offset ${at}${where(label)}`, at);
  return pos + length;
}

function readIndex(buf: Buffer, at: number, count: number, what: string, label: string): number {
  const pos = readInt(buf, at, what, label);
  if (varintValue < 0 || varintValue >= count)
    throw new BoundsViolation(
      `${what} ${varintValue} at offset ${at} is not one of the ${count} ${what === 'union branch index' ? 'branches' : 'symbols'}${where(label)}`,
      at,
    );
  return pos;
}

/** Reads a block header of an array or map; returns the new position, the count in varintValue and the block end in blockEnd. */
let blockEnd = -1;
/** Items that can take 0 bytes met so far in the body being checked, and their limit. */
let zeroItems = 0;
let zeroLimit = 0;
function readBlock(buf: Buffer, at: number, kind: string, min: number, label: string): number {
  let pos = readVarint(buf, at, 10, `${kind} block count`, label);
  let count = varintValue;
  blockEnd = -1;
  if (count === 0) return pos;
  if (count < 0) {
    // A negative count is followed by the block's size in bytes (so that readers can skip it).
    count = -count;
    const sizeAt = pos;
    pos = readVarint(buf, pos, 10, `${kind} block byte size`, label);
    const left = buf.length - pos;
    if (varintValue < 0 || varintValue > left)
      throw new BoundsViolation(
        `${kind} block byte size ${varintValue} at offset ${sizeAt} is not within the ${left} bytes left${where(label)}`,
        sizeAt,
      );
    blockEnd = pos + varintValue;
  }
  const left = (blockEnd >= 0 ? blockEnd : buf.length) - pos;
  if (min > 0) {
    if (count * min > left)
      throw new BoundsViolation(
        `${kind} block count ${count} exceeds the ${left} bytes left at offset ${at}${where(label)}`,
        at,
      );
  } else {
    zeroItems += count;
    if (zeroItems > zeroLimit) {
      throw new BoundsViolation(
        `${kind} block count ${count} at offset ${at} takes the items that can be 0 bytes long past the limit of ${zeroLimit} per record${where(label)}`,
        at,
      );
    }
  }
  varintValue = count;
  return pos;
}

function checkBlockEnd(pos: number, end: number, start: number, at: number, kind: string, label: string): void {
  if (end >= 0 && pos !== end)
    throw new BoundsViolation(
      `${kind} block at offset ${at} declares ${end - start} bytes but its items take ${pos - start}${where(label)}`,
      at,
    );
}

function tooDeep(pos: number, limit: number, label: string): never {
  throw new BoundsViolation(`records nest deeper than ${limit} levels at offset ${pos}${where(label)}`, pos);
}

const helpers = {
  readVarint,
  readInt,
  skipFixed,
  skipBoolean,
  skipLength,
  readIndex,
  readBlock,
  checkBlockEnd,
  tooDeep,
  value: () => varintValue,
  blockEnd: () => blockEnd,
};

type Skipper = (buf: Buffer) => number;

function compileSkip(root: SchemaNode, limits: BoundsLimits): Skipper {
  const labels: string[] = [];
  const names: string[] = [];
  const lit = (text: string, table: string[]): string => {
    let i = table.indexOf(text);
    if (i < 0) i = table.push(text) - 1;
    return `${table === labels ? 'L' : 'N'}[${i}]`;
  };
  const recordFns = new Map<SchemaNode, string>();
  const functions: string[] = [];
  let unique = 0;

  // Code that advances `pos` over one value of `node`; `depth` is in scope.
  const emit = (node: SchemaNode, label: string): string => {
    const L = lit(label, labels);
    // Each case inlines the common, valid encoding and leaves everything else (and the error's words) to a helper.
    switch (node.kind) {
      case 'null':
        return '';
      case 'boolean':
        return `pos = h.skipBoolean(buf, pos, ${L});\n`;
      case 'int':
      case 'long': {
        const u = unique++;
        const slow =
          node.kind === 'int' ? `h.readInt(buf, pos, 'int', ${L})` : `h.readVarint(buf, pos, 10, 'long', ${L})`;
        // Up to 4 bytes (28 bits) is safe for both; longer ones go through the helper's full check.
        return `{ let k${u} = pos; const m${u} = pos + 4 < len ? pos + 4 : len; while (k${u} < m${u} && buf[k${u}] & 0x80) k${u} += 1;\nif (k${u} < m${u}) pos = k${u} + 1; else pos = ${slow}; }\n`;
      }
      case 'float':
      case 'double': {
        const size = node.kind === 'float' ? 4 : 8;
        return `if (pos + ${size} <= len) pos += ${size}; else pos = h.skipFixed(buf, pos, ${size}, '${node.kind}', ${L});\n`;
      }
      case 'string':
      case 'bytes': {
        const u = unique++;
        return `{ const b${u} = buf[pos]; if (b${u} < 0x80 && (b${u} & 1) === 0 && pos + 1 + (b${u} >> 1) <= len) pos += 1 + (b${u} >> 1); else pos = h.skipLength(buf, pos, '${node.kind} length', ${L}); }\n`;
      }
      case 'fixed':
        return `pos = h.skipFixed(buf, pos, ${node.size}, ${lit(`fixed ${node.name}`, names)}, ${L});\n`;
      case 'enum':
        return `pos = h.readIndex(buf, pos, ${node.symbols}, 'enum index', ${L});\n`;
      case 'union': {
        const u = unique++;
        const n = node.branches.length;
        const cases = node.branches.map((b, i) => `case ${i}: {\n${emit(b, label)}break; }\n`).join('');
        return (
          `let u${u} = buf[pos];\nif (u${u} < 0x80 && (u${u} & 1) === 0 && (u${u} >> 1) < ${n}) { pos += 1; u${u} >>= 1; }\n` +
          `else { pos = h.readIndex(buf, pos, ${n}, 'union branch index', ${L}); u${u} = h.value(); }\nswitch (u${u}) {\n${cases}}\n`
        );
      }
      case 'array':
      case 'map': {
        const u = unique++;
        const isMap = node.kind === 'map';
        const element = isMap ? node.values : node.items;
        const min = (isMap ? 1 : 0) + minBytes(element);
        const key = isMap ? `pos = h.skipLength(buf, pos, 'string length', ${lit(`${label} key`, labels)});\n` : '';
        return (
          `for (;;) {\nconst at${u} = pos;\npos = h.readBlock(buf, pos, '${node.kind}', ${min}, ${L});\nconst n${u} = h.value();\nif (n${u} === 0) break;\n` +
          `const end${u} = h.blockEnd();\nconst start${u} = pos;\nfor (let i${u} = 0; i${u} < n${u}; i${u} += 1) {\n${key}${emit(element, `${label}${isMap ? '{}' : '[]'}`)}}\n` +
          `h.checkBlockEnd(pos, end${u}, start${u}, at${u}, '${node.kind}', ${L});\n}\n`
        );
      }
      case 'record': {
        let fn = recordFns.get(node);
        if (!fn) {
          // One function per record type (and first label), so that recursive records call themselves.
          fn = `r${recordFns.size}`;
          recordFns.set(node, fn);
          const body = node.fields.map((f) => emit(f.type, label ? `${label}.${f.name}` : f.name)).join('');
          functions.push(
            `function ${fn}(buf, pos, depth) {\nconst len = buf.length;\nif (depth > ${limits.maxDepth}) h.tooDeep(pos, ${limits.maxDepth}, ${L});\ndepth += 1;\n${body}return pos;\n}\n`,
          );
        }
        return `pos = ${fn}(buf, pos, depth);\n`;
      }
    }
  };
  const top = emit(root, '');
  const source = `'use strict';\n${functions.join('')}return function skip(buf) {\nlet pos = 0;\nconst depth = 0;\nconst len = buf.length;\n${top}return pos;\n};`;
  // eslint-disable-next-line no-new-func -- generated from the schema's structure only
  return new Function('h', 'L', 'N', source)(helpers, labels, names) as Skipper;
}

/** A compiled bounds check: throws BoundsViolation unless `body` is exactly one well-formed value of the schema. */
export type BoundsCheck = (body: Buffer) => void;

/** Compiles the bounds check of a writer schema (its JSON, or an already parsed graph). Compile once per schema. */
export function compileBoundsCheck(schema: unknown, limits: BoundsLimits = defaultBoundsLimits): BoundsCheck {
  const skip = compileSkip(isNode(schema) ? schema : parseSchemaGraph(schema), limits);
  const limit = limits.maxZeroByteItems;
  return (body) => {
    zeroItems = 0;
    zeroLimit = limit;
    const pos = skip(body);
    if (pos !== body.length)
      throw new BoundsViolation(`${body.length - pos} trailing bytes after the record at offset ${pos}`, pos);
  };
}

const nodeKinds = new Set([
  'null',
  'boolean',
  'int',
  'long',
  'float',
  'double',
  'bytes',
  'string',
  'record',
  'enum',
  'fixed',
  'array',
  'map',
  'union',
]);

function isNode(value: unknown): value is SchemaNode {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    nodeKinds.has((value as { kind?: string }).kind ?? '') &&
    !('type' in value)
  );
}
