/**
 * Schema evolution on read. A processor is built against one version of each record type it reads: its reader
 * schema. The records on its inputs were written with whatever version their producer had: the writer schema,
 * found by the id in each record's header. Decoding resolves writer → reader by Avro's resolution rules (avsc's
 * resolver): a field only the reader has gets its default, a field only the writer has is skipped, aliases map
 * renamed fields and record types. Without a reader schema a record is decoded as written (the writer's schema).
 *
 * The hostile-input guarantees stay as they were: the body is bounded-checked against the writer schema (the bytes
 * are in the writer's layout) before avsc reads it; the value ranges checked are the reader's, since they are what
 * the processor relies on, and a default the reader fills in is checked like any other value. A writer the reader
 * cannot resolve (a retyped field, a new field without a default) is a dead letter with reason `incompatible`.
 * See docs/schemas.md.
 */
import { readFileSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';
import avro from 'avsc';
import { AgentStreamsError, ErrorCode } from '../errors.ts';
import { parseSchemaGraph } from './bounded.ts';
import { compileRangeCheck, type RangeCheck } from './ranges.ts';

/**
 * A reader schema as a topology declares it: an Avro record schema object, or the path of a `.avsc` file (relative
 * to the working directory, or a `file:` URL such as `new URL('../schemas/Trade.avsc', import.meta.url)`).
 */
export type ReaderSchemaSource = Readonly<Record<string, unknown>> | string | URL;

/** A reader schema compiled once, at start. */
export interface ReaderSchema {
  /** Full name of the reader's record type: the `recordType` its decoded records carry. */
  readonly recordType: string;
  /** The writer record types it reads: its own full name and its aliases (a renamed type keeps its old name as an alias). */
  readonly reads: readonly string[];
  readonly type: avro.Type;
  /** The reader's documented value ranges, if any. */
  readonly ranges: RangeCheck | null;
  /** Where it came from, for messages: the file, or "an inline schema". */
  readonly source: string;
}

/** A processor's reader schemas, by the writer record type each one reads. */
export interface ReaderSchemas {
  readonly processor: string;
  readonly byWriterType: ReadonlyMap<string, ReaderSchema>;
}

function fullName(name: string, namespace: unknown): string {
  return name.includes('.') || typeof namespace !== 'string' || namespace === '' ? name : `${namespace}.${name}`;
}

/** Loads and compiles one reader schema; throws an Error whose message says what is wrong with it. */
export function compileReaderSchema(source: ReaderSchemaSource): ReaderSchema {
  let json: unknown = source;
  let where = 'an inline schema';
  if (typeof source === 'string' || source instanceof URL) {
    const path = source instanceof URL ? fileURLToPath(source) : resolvePath(source);
    where = typeof source === 'string' ? source : path;
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (error) {
      throw new Error(
        `${where} cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); give the path of a .avsc file relative to ${process.cwd()}, or a schema object`,
        { cause: error },
      );
    }
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new Error(`${where} is not valid JSON: ${(error as Error).message}`, { cause: error });
    }
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json))
    throw new Error(`${where} is not an Avro record schema (a JSON object with "type": "record")`);
  let type: avro.Type;
  try {
    type = avro.Type.forSchema(json as avro.Schema);
  } catch (error) {
    throw new Error(`${where} is not a valid Avro schema: ${(error as Error).message}`, { cause: error });
  }
  if (type.typeName !== 'record' || !type.name)
    throw new Error(`${where} must define a named record (records are what topics carry)`);
  let ranges: RangeCheck | null;
  try {
    // From the JSON: the `range` rules are custom attributes, which avsc's Type drops.
    ranges = compileRangeCheck(parseSchemaGraph(json));
  } catch (error) {
    throw new Error(`${where} has an invalid range rule: ${(error as Error).message}`, { cause: error });
  }
  const o = json as { namespace?: unknown; aliases?: unknown };
  const namespace =
    typeof o.namespace === 'string'
      ? o.namespace
      : type.name.includes('.')
        ? type.name.slice(0, type.name.lastIndexOf('.'))
        : undefined;
  const aliases = Array.isArray(o.aliases)
    ? o.aliases.filter((a): a is string => typeof a === 'string').map((a) => fullName(a, namespace))
    : [];
  return { recordType: type.name, reads: [type.name, ...aliases], type, ranges, source: where };
}

const compiled = new WeakMap<object, ReaderSchemas>();

/**
 * Compiles a processor's declared reader schemas (keyed by the record type's full name). Compiled once per
 * declaration object, so that validation at start and every codec share one compilation. Throws an Error listing
 * every problem; `knownTypes`, when given, are the record types the processor can receive, and a reader schema
 * for any other type is a problem.
 */
export function compileReaderSchemas(
  processor: string,
  declared: Readonly<Record<string, ReaderSchemaSource>>,
  knownTypes?: ReadonlySet<string>,
): ReaderSchemas {
  const cached = compiled.get(declared);
  if (cached && !knownTypes) return cached;
  const problems: string[] = [];
  const byWriterType = new Map<string, ReaderSchema>();
  for (const [recordType, source] of Object.entries(declared)) {
    let reader: ReaderSchema;
    try {
      reader = compileReaderSchema(source);
    } catch (error) {
      problems.push(`processor "${processor}" reader schema for ${recordType}: ${(error as Error).message}`);
      continue;
    }
    if (!reader.reads.includes(recordType)) {
      problems.push(
        `processor "${processor}" declares its reader schema for ${recordType} with ${reader.source}, which defines ${reader.recordType}` +
          `${reader.reads.length > 1 ? ` (aliases ${reader.reads.slice(1).join(', ')})` : ''}; key it by the record type's full name, or add the old name to the schema's aliases`,
      );
      continue;
    }
    if (knownTypes && !reader.reads.some((name) => knownTypes.has(name))) {
      problems.push(
        `processor "${processor}" declares a reader schema for ${recordType}, which it never reads: its inputs carry ${[...knownTypes].sort().join(', ') || 'no declared record types'}`,
      );
      continue;
    }
    for (const name of reader.reads) {
      const other = byWriterType.get(name);
      if (other && other !== reader)
        problems.push(
          `processor "${processor}" has two reader schemas for ${name}: ${other.recordType} (${other.source}) and ${reader.recordType} (${reader.source})`,
        );
      byWriterType.set(name, reader);
    }
  }
  if (problems.length > 0) throw new Error(problems.join('\n  - '));
  const readers: ReaderSchemas = { processor, byWriterType };
  compiled.set(declared, readers);
  return readers;
}

/** The outcome of resolving one writer schema to a reader: a resolver, or why there can be none. */
export type Resolution = { reader: ReaderSchema; resolver: avro.Resolver } | { reader: ReaderSchema; error: Error };

/**
 * Resolvers by (reader, writer schema id). Each codec owns one: schema ids are only unique within one registry.
 * A failed resolution is cached too, so that an incompatible writer costs one attempt, not one per record.
 */
export class ResolverCache {
  private readonly byReader = new Map<ReaderSchema, Map<number, Resolution>>();
  /** Resolvers built so far (failures included): stops growing once every writer has been met. */
  built = 0;

  resolve(reader: ReaderSchema, writerId: number, writerType: avro.Type): Resolution {
    let byWriter = this.byReader.get(reader);
    if (!byWriter) this.byReader.set(reader, (byWriter = new Map()));
    let resolution = byWriter.get(writerId);
    if (!resolution) {
      this.built += 1;
      try {
        resolution = { reader, resolver: reader.type.createResolver(writerType) };
      } catch (error) {
        resolution = { reader, error: error as Error };
      }
      byWriter.set(writerId, resolution);
    }
    return resolution;
  }
}

/** A processor's compiled reader schemas, or undefined when it declares none (records are decoded as written). */
export function readerSchemasOf(
  processor: string,
  declared: Readonly<Record<string, ReaderSchemaSource>> | undefined,
): ReaderSchemas | undefined {
  if (!declared || Object.keys(declared).length === 0) return undefined;
  try {
    return compileReaderSchemas(processor, declared);
  } catch (error) {
    throw new AgentStreamsError(
      ErrorCode.TOPOLOGY_INVALID,
      `Invalid reader schemas:\n  - ${(error as Error).message}`,
      { cause: error },
    );
  }
}
