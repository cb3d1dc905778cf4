/**
 * The four record types that connectors bring into `market.events`, and the one place that decides whether an
 * outside value is one of them. File replay and the HTTP gateway take untrusted JSON or CSV; both validate it here
 * against the Avro schemas in schemas/market (every problem with its field path, not just the first), so the rest
 * of the fleet can trust what it reads.
 */
import { join } from 'node:path';
import avro from 'avsc';
import { AgentStreamsError, ErrorCode } from '../runtime/errors.ts';
import { loadSchemas } from '../runtime/serde/schemas.ts';
import { FilingType, NewsItemType, PriceTickType, TradeType } from '../schemas/generated/types.ts';
import type { Filing, NewsItem, PriceTick, Trade } from '../schemas/generated/types.ts';

/** Short name → registry subject (record-name strategy: all four share one topic). */
export const MarketRecord = {
  PriceTick: PriceTickType,
  Trade: TradeType,
  NewsItem: NewsItemType,
  Filing: FilingType,
} as const;

export type MarketRecordName = keyof typeof MarketRecord;
export type MarketSubject = (typeof MarketRecord)[MarketRecordName];

export interface MarketRecordValue {
  PriceTick: PriceTick;
  Trade: Trade;
  NewsItem: NewsItem;
  Filing: Filing;
}

export const marketRecordNames = Object.keys(MarketRecord) as MarketRecordName[];

export const DEFAULT_MARKET_TOPIC = 'market.events';

/** Accepts the short name (`Trade`) or the full record name (`agentstreams.market.Trade`). */
export function marketRecordName(value: string): MarketRecordName | undefined {
  if (Object.hasOwn(MarketRecord, value)) return value as MarketRecordName;
  return marketRecordNames.find((name) => MarketRecord[name] === value);
}

/** One thing wrong with a value: where (`insider.shares`, `symbols[0]`, `[3].price`) and what. */
export interface FieldProblem {
  path: string;
  message: string;
}

export function formatProblems(problems: readonly FieldProblem[]): string {
  return problems.map((p) => (p.path ? `${p.path}: ${p.message}` : p.message)).join('; ');
}

/** Upper-case tickers such as ACME or BRK.B: the record key, so it decides the partition. */
const SYMBOL = /^[A-Z0-9][A-Z0-9.-]{0,15}$/;

/**
 * The Kafka keys a record is produced under: its symbol, or for news each of its symbols, so a story about ACME
 * and BOLT reaches both symbols' partitions (downstream deduplicates on the story id).
 */
export function keysOf<N extends MarketRecordName>(name: N, value: MarketRecordValue[N]): string[] {
  if (name === 'NewsItem') return [...new Set((value as NewsItem).symbols)];
  return [(value as PriceTick | Trade | Filing).symbol];
}

function joinPath(prefix: string, segment: string | number): string {
  if (typeof segment === 'number' || /^\d+$/.test(segment)) return `${prefix}[${segment}]`;
  return prefix ? `${prefix}.${segment}` : segment;
}

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string')
    return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
  if (typeof value === 'number') return Number.isFinite(value) ? `the number ${value}` : String(value);
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${String(value)}`;
}

function unionBranches(type: avro.Type): avro.Type[] | undefined {
  return type instanceof avro.types.UnwrappedUnionType || type instanceof avro.types.WrappedUnionType
    ? type.types
    : undefined;
}

function describeType(type: avro.Type): string {
  const branches = unionBranches(type);
  if (branches) return branches.map(describeType).join(' or ');
  if (type instanceof avro.types.EnumType) return `one of ${type.symbols.join(', ')}`;
  if (type instanceof avro.types.ArrayType) return `an array of ${describeType(type.itemsType)}`;
  if (type instanceof avro.types.RecordType) return `an object (${type.name ?? 'record'})`;
  switch (type.typeName) {
    case 'long':
    case 'int':
      return `a whole number (${type.typeName})`;
    case 'double':
    case 'float':
      return 'a number';
    case 'string':
      return 'a string';
    case 'boolean':
      return 'true or false';
    case 'null':
      return 'null';
    default:
      return type.typeName;
  }
}

const fieldTypes = new WeakMap<avro.types.RecordType, Map<string, avro.Type>>();

/** Fields a value has that its record type does not: a typo (`prise`) would otherwise be dropped in silence. */
function undeclaredFields(type: avro.Type, value: unknown, path: string, problems: FieldProblem[]): void {
  const branches = unionBranches(type);
  if (branches) {
    if (value === null || typeof value !== 'object') return;
    const records = branches.filter((t) => t instanceof avro.types.RecordType);
    if (records.length === 1) undeclaredFields(records[0]!, value, path, problems);
    return;
  }
  if (type instanceof avro.types.ArrayType && Array.isArray(value)) {
    value.forEach((item, i) => undeclaredFields(type.itemsType, item, joinPath(path, i), problems));
    return;
  }
  if (!(type instanceof avro.types.RecordType) || value === null || typeof value !== 'object' || Array.isArray(value))
    return;
  let fields = fieldTypes.get(type);
  if (!fields) fieldTypes.set(type, (fields = new Map(type.fields.map((f) => [f.name, f.type]))));
  for (const [key, child] of Object.entries(value)) {
    const fieldType = fields.get(key);
    if (fieldType === undefined) {
      problems.push({
        path: joinPath(path, key),
        message: `is not a field of ${type.name?.slice(type.name.lastIndexOf('.') + 1)} (fields: ${[...fields.keys()].join(', ')})`,
      });
    } else {
      undeclaredFields(fieldType, child, joinPath(path, key), problems);
    }
  }
}

/** Paths of the `timestamp-millis` fields, read from the schema JSON (avsc drops logical types it does not map). */
function timestampPaths(schema: unknown, path = ''): string[] {
  if (Array.isArray(schema)) return schema.flatMap((branch) => timestampPaths(branch, path));
  if (schema === null || typeof schema !== 'object') return [];
  const node = schema as { type?: unknown; logicalType?: unknown; fields?: Array<{ name: string; type: unknown }> };
  if (node.type === 'long' && node.logicalType === 'timestamp-millis') return [path];
  if (node.type === 'record' && Array.isArray(node.fields))
    return node.fields.flatMap((f) => timestampPaths(f.type, path ? `${path}.${f.name}` : f.name));
  return typeof node.type === 'object' ? timestampPaths(node.type, path) : [];
}

/** ISO-8601 with an explicit zone: a time without one would be read in the local zone of whichever machine runs. */
const ISO_WITH_ZONE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/;

export function parseIsoTime(text: string): number | undefined {
  if (!ISO_WITH_ZONE.test(text)) return undefined;
  const ms = Date.parse(text);
  return Number.isFinite(ms) ? ms : undefined;
}

interface RecordShape {
  type: avro.types.RecordType;
  timestamps: string[][];
}

/**
 * The market schemas as local avsc types, loaded once from schemas/market. Validation needs no registry, so the
 * generator, tests and a dry run of a replay file work without one.
 */
export class MarketSchemas {
  private readonly shapes = new Map<MarketRecordName, RecordShape>();

  constructor(dir: string = join(import.meta.dirname, '../schemas/market')) {
    const files = new Map(loadSchemas(dir).map((s) => [s.subject, s]));
    for (const name of marketRecordNames) {
      const file = files.get(MarketRecord[name]);
      if (!file)
        throw new AgentStreamsError(ErrorCode.SCHEMA_INVALID, `${dir} has no schema for ${MarketRecord[name]}.`);
      const type = avro.Type.forSchema(file.schema) as avro.types.RecordType;
      this.shapes.set(name, { type, timestamps: timestampPaths(file.schema).map((p) => p.split('.')) });
    }
  }

  typeOf(name: MarketRecordName): avro.types.RecordType {
    return this.shapes.get(name)!.type;
  }

  /**
   * Rewrites ISO-8601 strings in `timestamp-millis` fields to epoch milliseconds, in place, so people can write
   * `"2026-01-05T14:30:00Z"`. Anything else is left for `validate` to judge.
   */
  normalize(name: MarketRecordName, value: unknown): unknown {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
    for (const path of this.shapes.get(name)!.timestamps) {
      let parent = value as Record<string, unknown>;
      for (const segment of path.slice(0, -1)) {
        const next = parent[segment];
        if (next === null || typeof next !== 'object') break;
        parent = next as Record<string, unknown>;
      }
      const leaf = path[path.length - 1]!;
      const current = parent[leaf];
      if (typeof current === 'string') {
        const ms = parseIsoTime(current);
        if (ms !== undefined) parent[leaf] = ms;
      }
    }
    return value;
  }

  /** Every problem with `value` as a `name` record, each with its path under `prefix`; empty when it is valid. */
  validate(name: MarketRecordName, value: unknown, prefix = ''): FieldProblem[] {
    const type = this.typeOf(name);
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      return [{ path: prefix, message: `expected a JSON object (a ${name}), got ${describeValue(value)}` }];
    }
    const problems: FieldProblem[] = [];
    undeclaredFields(type, value, prefix, problems);
    type.isValid(value, {
      errorHook: (path: string[], invalid: unknown, invalidType: avro.Type) => {
        const at = path.reduce<string>((p, segment) => joinPath(p, segment), prefix);
        problems.push({
          path: at,
          message:
            invalid === undefined
              ? `is missing; expected ${describeType(invalidType)}`
              : `expected ${describeType(invalidType)}, got ${describeValue(invalid)}`,
        });
      },
    });
    if (problems.length > 0) return problems;
    // Rules the schema cannot say: the key must be a real ticker, and news must name at least one.
    const record = value as Record<string, unknown>;
    if (name === 'NewsItem') {
      const symbols = record.symbols as string[];
      if (symbols.length === 0)
        problems.push({
          path: joinPath(prefix, 'symbols'),
          message: 'needs at least one symbol (each symbol is a record key)',
        });
      symbols.forEach((s, i) => {
        if (!SYMBOL.test(s))
          problems.push({
            path: joinPath(joinPath(prefix, 'symbols'), i),
            message: `${JSON.stringify(s)} is not an upper-case ticker like ACME or BRK.B`,
          });
      });
    } else if (!SYMBOL.test(record.symbol as string)) {
      problems.push({
        path: joinPath(prefix, 'symbol'),
        message: `${JSON.stringify(record.symbol)} is not an upper-case ticker like ACME or BRK.B`,
      });
    }
    return problems;
  }
}
