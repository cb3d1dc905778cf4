/**
 * Shared tables (portfolios and their rules): rows of one Avro record type by key, in one Redis hash per table
 * (`as:table:{<application>}:<name>`, JSON values). Rows are validated when written, against their schema and then
 * the table's own rules (`TableSpec.validate`); the runtime reads whole tables into memory and refreshes them, so
 * processors read them synchronously.
 */
import avro from 'avsc';
import type { Redis } from 'ioredis';
import { AgentStreamsError, ErrorCode } from '../errors.ts';
import type { SchemaFile } from '../serde/schemas.ts';
import type { Topology } from '../topology/topology.ts';

function tableSpec(topology: Topology, name: string) {
  const spec = topology.tables?.[name];
  if (!spec) throw new AgentStreamsError(ErrorCode.USAGE, `Topology "${topology.application}" has no table "${name}"; it has ${Object.keys(topology.tables ?? {}).join(', ') || 'none'}.`);
  return spec;
}

/** Validates every row first, then replaces the table in one transaction: a bad file changes nothing. */
export async function writeTable(redis: Redis, topology: Topology, name: string, rows: unknown[], schemas: SchemaFile[]): Promise<number> {
  const spec = tableSpec(topology, name);
  const schema = schemas.find((s) => s.subject === spec.recordType);
  if (!schema) throw new AgentStreamsError(ErrorCode.SCHEMA_INVALID, `No schema for ${spec.recordType} in the schema folder.`);
  const type = avro.Type.forSchema(schema.schema);
  const problems: string[] = [];
  const entries: string[] = [];
  rows.forEach((row, i) => {
    const paths: string[] = [];
    // Defaults apply, as they would for a reader of the schema; what cannot be filled is reported below.
    let filled: unknown = row;
    try {
      filled = type.clone(row);
    } catch {
      // keep the row as given
    }
    if (!type.isValid(filled, { errorHook: (path) => paths.push(path.join('.') || '(root)') })) {
      problems.push(`row ${i + 1}: does not match ${spec.recordType} at ${paths.join(', ')}`);
      return;
    }
    const key = (filled as Record<string, unknown>)[spec.keyField];
    if (typeof key !== 'string' || key === '') {
      problems.push(`row ${i + 1}: key field "${spec.keyField}" must be a non-empty string`);
      return;
    }
    const ruleProblems = spec.validate?.(filled) ?? [];
    if (ruleProblems.length > 0) {
      problems.push(...ruleProblems.map((problem) => `row ${i + 1} (${key}): ${problem}`));
      return;
    }
    entries.push(key, JSON.stringify(filled));
  });
  if (problems.length > 0) {
    throw new AgentStreamsError(ErrorCode.SCHEMA_INVALID, `Table "${name}" was not changed:\n  - ${problems.join('\n  - ')}`, { details: { problems } });
  }
  const key = topology.tableKey(name);
  const multi = redis.multi().del(key);
  if (entries.length > 0) multi.hset(key, ...entries);
  await multi.exec();
  return entries.length / 2;
}

export async function readTables(redis: Redis, topology: Topology, names: string[]): Promise<Map<string, Map<string, unknown>>> {
  const out = new Map<string, Map<string, unknown>>();
  if (names.length === 0) return out;
  const pipeline = redis.pipeline();
  for (const name of names) pipeline.hgetall(topology.tableKey(name));
  const results = (await pipeline.exec()) ?? [];
  names.forEach((name, i) => {
    const [error, hash] = results[i]!;
    if (error) throw error;
    out.set(name, new Map(Object.entries(hash as Record<string, string>).map(([k, v]) => [k, JSON.parse(v) as unknown])));
  });
  return out;
}
