/**
 * The project's Avro schemas (`schemas/**\/*.avsc`) and their registration. Subjects follow the record-name
 * strategy (subject = the record's full name) so that several record types can share a topic. Registration
 * checks compatibility first and refuses an incompatible change with the registry's verdict, before anything
 * is deployed.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import avro from 'avsc';
import { COMPATIBILITY, SchemaType, type SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import type { Config } from '../config/index.ts';
import { AgentStreamsError, ErrorCode } from '../errors.ts';
import { compileRangeCheck } from './ranges.ts';

export const compatibilityLevels = [
  'BACKWARD',
  'BACKWARD_TRANSITIVE',
  'FORWARD',
  'FORWARD_TRANSITIVE',
  'FULL',
  'FULL_TRANSITIVE',
  'NONE',
] as const;
export type Compatibility = (typeof compatibilityLevels)[number];

export interface SchemaFile {
  file: string;
  /** Record full name, also the registry subject. */
  subject: string;
  schema: avro.Schema;
  text: string;
}

function listAvsc(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return listAvsc(path);
    return name.endsWith('.avsc') ? [path] : [];
  });
}

export function parseSchema(text: string, file: string): SchemaFile {
  let schema: avro.Schema;
  try {
    schema = JSON.parse(text) as avro.Schema;
  } catch (error) {
    throw new AgentStreamsError(ErrorCode.SCHEMA_INVALID, `${file} is not valid JSON: ${(error as Error).message}`);
  }
  let type: avro.Type;
  try {
    type = avro.Type.forSchema(schema);
  } catch (error) {
    throw new AgentStreamsError(
      ErrorCode.SCHEMA_INVALID,
      `${file} is not a valid Avro schema: ${(error as Error).message}`,
    );
  }
  if (type.typeName !== 'record' || !type.name) {
    throw new AgentStreamsError(
      ErrorCode.SCHEMA_INVALID,
      `${file} must define a named record (topics carry records, and the record name is the subject).`,
    );
  }
  try {
    // The decoder's checks (bounds and `range` rules) compile here first, so a malformed rule fails at the edge.
    compileRangeCheck(schema);
  } catch (error) {
    throw new AgentStreamsError(
      ErrorCode.SCHEMA_INVALID,
      `${file} has an invalid range rule: ${(error as Error).message}`,
    );
  }
  return { file, subject: type.name, schema, text };
}

export function loadSchemas(dir: string): SchemaFile[] {
  const files = listAvsc(dir).sort();
  const schemas = files.map((path) => parseSchema(readFileSync(path, 'utf8'), relative(process.cwd(), path)));
  const seen = new Map<string, string>();
  for (const s of schemas) {
    const other = seen.get(s.subject);
    if (other)
      throw new AgentStreamsError(ErrorCode.SCHEMA_INVALID, `${s.file} and ${other} both define ${s.subject}.`);
    seen.set(s.subject, s.file);
  }
  return schemas;
}

export async function registryHttp(
  config: Config,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: unknown }> {
  const headers: Record<string, string> = {
    'content-type': 'application/vnd.schemaregistry.v1+json',
    accept: 'application/vnd.schemaregistry.v1+json, application/json',
  };
  if (config.registry.username) {
    headers.authorization = `Basic ${Buffer.from(`${config.registry.username}:${config.registry.password}`).toString('base64')}`;
  }
  let response: Response;
  try {
    response = await fetch(`${config.registry.url}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
  } catch (error) {
    throw new AgentStreamsError(
      ErrorCode.REGISTRY_UNAVAILABLE,
      `Schema registry at ${config.registry.url} cannot be reached (${(error as Error).message}). Is the stack up? \`agent-streams stack status\``,
      {
        retriable: true,
        cause: error,
      },
    );
  }
  const text = await response.text();
  let json: unknown = text;
  try {
    json = JSON.parse(text);
  } catch {
    // keep the text
  }
  return { status: response.status, json };
}

/** What a refusal under each level means, in the words of who could not read what. */
const incompatibilityMeaning: Record<Compatibility, string> = {
  BACKWARD: 'A processor built against the new version could not read records written with the registered one.',
  BACKWARD_TRANSITIVE:
    'A processor built against the new version could not read records written with some registered version.',
  FORWARD: 'A processor built against the registered version could not read records written with the new one.',
  FORWARD_TRANSITIVE:
    'A processor built against some registered version could not read records written with the new one.',
  FULL: 'The new and the registered version could not each read records written with the other.',
  FULL_TRANSITIVE: 'The new version and some registered version could not each read records written with the other.',
  NONE: 'The registry refused it although the rule is NONE.',
};

export interface RegisterOutcome {
  subject: string;
  id: number;
  file: string;
}

/**
 * Registers each schema under its subject with `compatibility` set on the subject. A change the registry finds
 * incompatible with the latest registered version is refused with AS_SCHEMA_INCOMPATIBLE and nothing after it
 * is registered.
 */
export async function registerSchemas(
  config: Config,
  registry: SchemaRegistry,
  schemas: SchemaFile[],
  compatibility: Compatibility = 'BACKWARD',
): Promise<RegisterOutcome[]> {
  const outcomes: RegisterOutcome[] = [];
  for (const s of schemas) {
    const subject = encodeURIComponent(s.subject);
    const versions = await registryHttp(config, 'GET', `/subjects/${subject}/versions`);
    if (versions.status === 200) {
      // The subject exists: set its rule explicitly (a registry may report NONE for subjects others created),
      // then ask for a verdict before registering.
      const set = await registryHttp(config, 'PUT', `/config/${subject}`, { compatibility });
      if (set.status !== 200)
        throw new AgentStreamsError(
          ErrorCode.REGISTRY_UNAVAILABLE,
          `Setting ${compatibility} on ${s.subject} failed: HTTP ${set.status} ${JSON.stringify(set.json)}`,
        );
      const verdict = await registryHttp(config, 'POST', `/compatibility/subjects/${subject}/versions/latest`, {
        schemaType: 'AVRO',
        schema: JSON.stringify(s.schema),
      });
      const compatible = (verdict.json as { is_compatible?: boolean }).is_compatible;
      if (verdict.status !== 200 || compatible !== true) {
        throw new AgentStreamsError(
          ErrorCode.SCHEMA_INCOMPATIBLE,
          `${s.file} is not ${compatibility}-compatible with the registered ${s.subject}` +
            `${verdict.status === 200 ? '' : ` (registry answered HTTP ${verdict.status}: ${JSON.stringify(verdict.json)})`}. ` +
            `${incompatibilityMeaning[compatibility]} Give added and removed fields defaults, rename only through aliases, never retype a field, or publish a new record type (docs/schemas.md).`,
          { details: { subject: s.subject, file: s.file, compatibility } },
        );
      }
    }
    try {
      const { id } = await registry.register(
        { type: SchemaType.AVRO, schema: JSON.stringify(s.schema) },
        { subject: s.subject, compatibility: COMPATIBILITY[compatibility] },
      );
      outcomes.push({ subject: s.subject, id, file: s.file });
    } catch (error) {
      const status = (error as { status?: number }).status;
      if (status === 409) {
        throw new AgentStreamsError(
          ErrorCode.SCHEMA_INCOMPATIBLE,
          `The registry refused ${s.file} as incompatible with ${s.subject}: ${(error as Error).message}`,
          {
            cause: error,
            details: { subject: s.subject, file: s.file },
          },
        );
      }
      throw error;
    }
  }
  return outcomes;
}
