/**
 * Avro in the Confluent wire format (magic byte 0, 4-byte big-endian schema id, Avro body) through a
 * Confluent-compatible registry. Schemas are fetched once per id and once per subject, then every encode and
 * decode is synchronous: a batch first resolves the ids it has not seen (`resolve`), then decodes in memory.
 */
import { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import avro from 'avsc';
import type { Config } from '../config/index.ts';
import { AgentStreamsError, ErrorCode } from '../errors.ts';
import { compileBoundsCheck, parseSchemaGraph, type BoundsCheck } from './bounded.ts';
import { compileRangeCheck, RangeViolation, type RangeCheck } from './ranges.ts';
import { ResolverCache, type ReaderSchemas, type Resolution } from './readers.ts';

export const WIRE_HEADER_BYTES = 5;

export interface DecodedRecord<T = unknown> {
  schemaId: number;
  /** Full name of the Avro record type, e.g. `agentstreams.market.PriceTick`: what the router dispatches on. */
  recordType: string;
  value: T;
}

export type DeserializeReason = 'empty' | 'magic-byte' | 'unknown-schema' | 'body' | 'range' | 'incompatible';

export function deserializeError(
  reason: DeserializeReason,
  message: string,
  details: Record<string, unknown> = {},
  cause?: unknown,
): AgentStreamsError {
  return new AgentStreamsError(ErrorCode.DESERIALIZE, message, { details: { reason, ...details }, cause });
}

/** Reads the schema id from the wire header without touching the body. */
export function schemaIdOf(buffer: Buffer | null): number {
  if (!buffer || buffer.length < WIRE_HEADER_BYTES) {
    throw deserializeError(
      'empty',
      `Record value is ${buffer ? `${buffer.length} bytes` : 'null'}: too short for the Confluent wire format (magic byte + 4-byte schema id + body).`,
    );
  }
  if (buffer[0] !== 0) {
    throw deserializeError(
      'magic-byte',
      `Record value starts with byte 0x${buffer[0]!.toString(16).padStart(2, '0')}, not the Confluent magic byte 0x00: it was not written by a schema-registry serializer.`,
    );
  }
  return buffer.readInt32BE(1);
}

/** What is checked around avsc when a body is decoded, compiled once per writer schema (id). */
export interface WriterChecks {
  /** Walks the body without allocating: no declared length, count or index is trusted beyond the bytes present. */
  bounds: BoundsCheck;
  /** The schema's documented value ranges (`range` field attributes; floats finite by default), if any. */
  ranges: RangeCheck | null;
}

/** Compiles the checks of a writer schema from its JSON (which, unlike an avsc Type, keeps custom attributes). */
export function compileWriterChecks(schema: unknown): WriterChecks {
  const graph = parseSchemaGraph(schema);
  return { bounds: compileBoundsCheck(graph), ranges: compileRangeCheck(graph) };
}

/**
 * Decodes an Avro body: bounds first (so hostile lengths never reach avsc's allocations), then avsc, then the
 * value ranges. Every failure is a deserialize error, which the runtime dead-letters. With a `resolution` the body
 * (bounded by its writer's checks) is read into the reader's schema, and the reader's ranges are checked.
 */
export function decodeBody(
  type: avro.Type,
  checks: WriterChecks,
  body: Buffer,
  schemaId: number,
  recordType: string,
  resolution?: Resolution,
): unknown {
  if (resolution && 'error' in resolution) {
    const { reader } = resolution;
    throw deserializeError(
      'incompatible',
      `${recordType} written with schema id ${schemaId} cannot be read as ${reader.recordType} (the reader schema from ${reader.source}): ${resolution.error.message}. ` +
        "The writer and the reader are not compatible: deploy readers and writers in the order docs/schemas.md gives for the subject's compatibility, or give the field a default.",
      { schemaId, recordType, readerRecordType: reader.recordType },
      resolution.error,
    );
  }
  let value: unknown;
  try {
    checks.bounds(body);
    value = resolution ? resolution.reader.type.fromBuffer(body, resolution.resolver) : type.fromBuffer(body);
  } catch (error) {
    throw deserializeError(
      'body',
      `Avro body does not match schema id ${schemaId} (${recordType}): ${(error as Error).message}`,
      { schemaId, recordType },
      error,
    );
  }
  const ranges = resolution ? resolution.reader.ranges : checks.ranges;
  if (ranges) {
    try {
      ranges(value);
    } catch (error) {
      if (!(error instanceof RangeViolation)) throw error;
      const as = resolution
        ? ` read as ${resolution.reader.recordType} (reader schema from ${resolution.reader.source})`
        : '';
      throw deserializeError(
        'range',
        `${recordType} (schema id ${schemaId})${as} is out of range: ${error.message}. Fix the producer; the record is dead-lettered.`,
        {
          schemaId,
          recordType,
          field: error.field,
          value: String(error.value),
          rule: error.rule,
        },
        error,
      );
    }
  }
  return value;
}

export function registryClient(config: Config): SchemaRegistry {
  const auth = config.registry.username
    ? { username: config.registry.username, password: config.registry.password }
    : undefined;
  return new SchemaRegistry({
    host: config.registry.url,
    ...(auth ? { auth } : {}),
    retry: { retries: 3, initialRetryTimeInSecs: 0.2, maxRetryTimeInSecs: 2 },
  });
}

export interface WriterEntry {
  id: number;
  type: avro.Type;
}

interface ReaderEntry {
  type: avro.Type;
  recordType: string;
  checks: WriterChecks;
}

/** The registry's answer for one id, as stored (custom attributes included). */
interface RegistrySchemaResponse {
  data(): { schema: string; schemaType?: string; references?: unknown[] };
}

export class AvroSerde {
  private readonly byId = new Map<number, ReaderEntry>();
  private readonly bySubject = new Map<string, WriterEntry>();
  /** Writer → reader resolvers, per (reader, writer id). */
  readonly resolvers = new ResolverCache();
  /** Registry round trips made so far: the cache is doing its job when this stops growing. */
  registryLookups = 0;

  constructor(private readonly registry: SchemaRegistry) {}

  /**
   * Fetches every schema id in `buffers` not yet cached, one request per id. Undecodable headers and ids the
   * registry does not have are left for decoding to report; an unreachable registry throws a retriable error.
   */
  async resolve(buffers: Iterable<Buffer | null>): Promise<void> {
    const missing = new Set<number>();
    for (const buffer of buffers) {
      if (buffer && buffer.length >= WIRE_HEADER_BYTES && buffer[0] === 0) {
        const id = buffer.readInt32BE(1);
        if (!this.byId.has(id)) missing.add(id);
      }
    }
    await Promise.all(
      [...missing].map((id) =>
        this.fetchId(id).catch((error: unknown) => {
          // An id the registry does not know is the record's problem (it will be dead-lettered); a registry that
          // cannot be reached is ours, and must be retried, never turned into dead letters.
          if ((error as { status?: number }).status === 404) return;
          throw new AgentStreamsError(
            ErrorCode.REGISTRY_UNAVAILABLE,
            `Schema registry lookup of id ${id} failed: ${(error as Error).message}`,
            {
              retriable: true,
              cause: error,
            },
          );
        }),
      ),
    );
  }

  private async fetchId(id: number): Promise<ReaderEntry> {
    const cached = this.byId.get(id);
    if (cached) return cached;
    this.registryLookups += 1;
    // The schema's text, not the client's avsc Type: the range rules are custom attributes, which avsc drops.
    // (The client's origin request is its one deduplicated GET /schemas/ids/{id}.)
    const origin = this.registry as unknown as { getSchemaOriginRequest(id: number): Promise<RegistrySchemaResponse> };
    const found = (await origin.getSchemaOriginRequest(id)).data();
    let type: avro.Type;
    let json: unknown;
    if ((found.schemaType ?? 'AVRO') === 'AVRO' && !found.references?.length) {
      json = JSON.parse(found.schema);
      type = avro.Type.forSchema(json as avro.Schema);
    } else {
      // Schemas with references: the client resolves them; its Type's own schema still bounds the decoding.
      type = (await this.registry.getSchema(id)) as unknown as avro.Type;
      json = type.schema();
    }
    const entry = { type, recordType: type.name ?? type.typeName, checks: compileWriterChecks(json) };
    this.byId.set(id, entry);
    return entry;
  }

  /**
   * Decodes one record; its schema id must have been resolved (the batch path) or is fetched now. With `readers`,
   * a record of a type they cover is read into that reader schema (see readers.ts).
   */
  async decode<T = unknown>(buffer: Buffer | null, readers?: ReaderSchemas): Promise<DecodedRecord<T>> {
    const id = schemaIdOf(buffer);
    if (!this.byId.has(id)) {
      try {
        await this.fetchId(id);
      } catch (error) {
        throw deserializeError(
          'unknown-schema',
          `Schema id ${id} is not known to the registry: ${(error as Error).message}`,
          { schemaId: id },
          error,
        );
      }
    }
    return this.decodeResolved<T>(buffer, readers);
  }

  /** Synchronous decode for the hot path, after `resolve`. */
  decodeResolved<T = unknown>(buffer: Buffer | null, readers?: ReaderSchemas): DecodedRecord<T> {
    const id = schemaIdOf(buffer);
    const entry = this.byId.get(id);
    if (!entry)
      throw deserializeError(
        'unknown-schema',
        `Schema id ${id} is not known to the registry (or the registry could not be reached when the batch was resolved).`,
        { schemaId: id },
      );
    const reader = readers?.byWriterType.get(entry.recordType);
    const resolution = reader ? this.resolvers.resolve(reader, id, entry.type) : undefined;
    const value = decodeBody(
      entry.type,
      entry.checks,
      (buffer as Buffer).subarray(WIRE_HEADER_BYTES),
      id,
      entry.recordType,
      resolution,
    ) as T;
    return { schemaId: id, recordType: reader ? reader.recordType : entry.recordType, value };
  }

  /** The record type a value carries, read from the header alone (no body decoding): routing uses this. */
  recordTypeOf(buffer: Buffer | null): string {
    const id = schemaIdOf(buffer);
    const entry = this.byId.get(id);
    if (!entry) throw deserializeError('unknown-schema', `Schema id ${id} has not been resolved.`, { schemaId: id });
    return entry.recordType;
  }

  /** Loads the latest schema of `subject` for writing; later `encode` calls for it are synchronous. */
  async writerFor(subject: string): Promise<WriterEntry> {
    const cached = this.bySubject.get(subject);
    if (cached) return cached;
    this.registryLookups += 1;
    let id: number;
    try {
      id = await this.registry.getLatestSchemaId(subject);
    } catch (error) {
      throw new AgentStreamsError(
        ErrorCode.SCHEMA_INVALID,
        `Subject "${subject}" has no schema in the registry: run \`agent-streams schemas register\` first.`,
        { cause: error, details: { subject } },
      );
    }
    const { type } = await this.fetchId(id);
    const entry = { id, type };
    this.bySubject.set(subject, entry);
    return entry;
  }

  encode(subject: string, value: unknown): Buffer {
    const writer = this.bySubject.get(subject);
    if (!writer)
      throw new AgentStreamsError(
        ErrorCode.SERIALIZE,
        `No writer schema loaded for "${subject}": await writerFor("${subject}") first.`,
      );
    const errors: string[] = [];
    if (!writer.type.isValid(value, { errorHook: (path) => errors.push(path.join('.') || '(root)') })) {
      throw new AgentStreamsError(
        ErrorCode.SERIALIZE,
        `Value does not match ${subject} (schema id ${writer.id}); invalid at: ${errors.join(', ')}.`,
        {
          details: { subject, paths: errors },
        },
      );
    }
    const body = writer.type.toBuffer(value);
    const out = Buffer.allocUnsafe(WIRE_HEADER_BYTES + body.length);
    out[0] = 0;
    out.writeInt32BE(writer.id, 1);
    body.copy(out, WIRE_HEADER_BYTES);
    return out;
  }
}
