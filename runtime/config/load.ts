/**
 * Loads the configuration once, at start-up: a JSON file (optional) overlaid by environment variables. Every
 * problem is collected and reported together, each naming the setting, where it came from and what was expected.
 */
import { readFileSync } from 'node:fs';
import { AgentStreamsError, ErrorCode } from '../errors.ts';
import type { Setting } from './settings.ts';
import { configSchema, type Config, type SchemaNode } from './schema.ts';

export interface LoadConfigOptions {
  env?: Record<string, string | undefined>;
  /** A JSON file shaped like the schema (`{"kafka": {"brokers": "…"}}`); `AS_CONFIG_FILE` names one too. */
  file?: string;
}

function isSetting(node: Setting<unknown> | SchemaNode): node is Setting<unknown> {
  return typeof (node as Setting<unknown>).parse === 'function';
}

export function loadConfig(options: LoadConfigOptions = {}): Config {
  const env = options.env ?? process.env;
  const filePath = options.file ?? env.AS_CONFIG_FILE;
  const problems: string[] = [];
  const explicit = new Set<string>();
  let fileValues: Record<string, unknown> = {};

  if (filePath) {
    try {
      const parsed: unknown = JSON.parse(readFileSync(filePath, 'utf8'));
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
        throw new Error('the top level must be a JSON object');
      }
      fileValues = parsed as Record<string, unknown>;
    } catch (error) {
      problems.push(`config file ${filePath}: ${(error as Error).message}`);
    }
  }

  const walk = (schema: SchemaNode, fileNode: unknown, path: string[]): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    const fileObject = fileNode !== null && typeof fileNode === 'object' ? (fileNode as Record<string, unknown>) : {};
    for (const key of Object.keys(fileObject)) {
      if (!(key in schema)) problems.push(`config file ${filePath}: unknown setting "${[...path, key].join('.')}"`);
    }
    for (const [key, node] of Object.entries(schema)) {
      const keyPath = [...path, key];
      if (!isSetting(node)) {
        out[key] = walk(node, fileObject[key], keyPath);
        continue;
      }
      const name = keyPath.join('.');
      const fromEnv = env[node.env];
      const fromFile = fileObject[key];
      let raw: string | undefined;
      let source = '';
      if (fromEnv !== undefined && fromEnv !== '') {
        raw = fromEnv;
        source = `environment variable ${node.env}`;
      } else if (fromFile !== undefined) {
        raw = Array.isArray(fromFile) ? fromFile.join(',') : String(fromFile);
        source = `config file ${filePath} at "${name}"`;
      }
      if (raw === undefined) {
        if (node.required) problems.push(`${name} is required: set ${node.env} (${node.doc})`);
        out[key] = node.default;
        continue;
      }
      explicit.add(name);
      try {
        out[key] = node.parse(raw);
      } catch (error) {
        problems.push(`${name} (${source}) is invalid: ${(error as Error).message}. ${node.doc}.`);
      }
    }
    return out;
  };

  const built = walk(configSchema, fileValues, []) as unknown as MutableConfig;
  deriveConnectionDefaults(built, explicit);

  if (problems.length > 0) {
    throw new AgentStreamsError(ErrorCode.CONFIG_INVALID, `Invalid configuration:\n  - ${problems.join('\n  - ')}`, {
      details: { problems },
    });
  }
  return built as Config;
}

type Mutable<T> = {
  -readonly [K in keyof T]: T[K] extends object ? (T[K] extends unknown[] ? T[K] : Mutable<T[K]>) : T[K];
};
type MutableConfig = Mutable<Config>;

/** Connection URLs follow the local stack's ports unless they were set explicitly. */
function deriveConnectionDefaults(config: MutableConfig, explicit: Set<string>): void {
  const { stack } = config;
  if (!explicit.has('kafka.brokers')) config.kafka.brokers = [`127.0.0.1:${stack.kafkaPort}`];
  if (!explicit.has('registry.url')) config.registry.url = `http://127.0.0.1:${stack.registryPort}/apis/ccompat/v7`;
  if (!explicit.has('redis.url'))
    config.redis.url = config.redis.url.replace(/@127\.0\.0\.1:\d+$/, `@127.0.0.1:${stack.redisPort}`);
  if (!explicit.has('clickhouse.url')) config.clickhouse.url = `http://127.0.0.1:${stack.clickhouseHttpPort}`;
}

/** A copy safe to print or log: secrets become `***`, and passwords inside URLs are masked. */
export function redactConfig(config: Config): Record<string, unknown> {
  const walk = (schema: SchemaNode, values: Record<string, unknown>): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (const [key, node] of Object.entries(schema)) {
      const value = values[key];
      if (!isSetting(node)) {
        out[key] = walk(node, value as Record<string, unknown>);
      } else if (node.secret && typeof value === 'string' && value !== '') {
        out[key] = /^[a-z]+:\/\//.test(value) ? value.replace(/\/\/([^@/]*)@/, '//***@') : '***';
      } else {
        out[key] = value;
      }
    }
    return out;
  };
  return walk(configSchema, config as unknown as Record<string, unknown>);
}

/**
 * The values of the secret settings that are set, for the logger to scrub from every line: plain secrets as they
 * are, and for URLs the password (and the user name) they carry, decoded and as written.
 */
export function secretValues(config: Config): string[] {
  const values: string[] = [];
  const walk = (schema: SchemaNode, node: Record<string, unknown>): void => {
    for (const [key, child] of Object.entries(schema)) {
      const value = node[key];
      if (!isSetting(child)) walk(child, value as Record<string, unknown>);
      else if (child.secret && typeof value === 'string' && value !== '') values.push(...secretPartsOf(value));
    }
  };
  walk(configSchema, config as unknown as Record<string, unknown>);
  return values;
}

function secretPartsOf(value: string): string[] {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) return [value];
  try {
    const url = new URL(value);
    return [url.password, decodeURIComponent(url.password)].filter((part) => part !== '');
  } catch {
    return [value];
  }
}

/** Dotted paths of the secret settings (`kafka.saslPassword`, …): redaction paths for objects shaped like the config. */
export function secretSettingPaths(): string[] {
  const paths: string[] = [];
  const walk = (schema: SchemaNode, path: string[]): void => {
    for (const [key, node] of Object.entries(schema)) {
      if (isSetting(node)) {
        if (node.secret) paths.push([...path, key].join('.'));
      } else walk(node, [...path, key]);
    }
  };
  walk(configSchema, []);
  return paths;
}

/** Every setting with its environment variable and documentation, for `agent-streams config --help`. */
export function describeSettings(): Array<{ name: string; env: string; doc: string; default: unknown }> {
  const rows: Array<{ name: string; env: string; doc: string; default: unknown }> = [];
  const walk = (schema: SchemaNode, path: string[]): void => {
    for (const [key, node] of Object.entries(schema)) {
      if (isSetting(node))
        rows.push({
          name: [...path, key].join('.'),
          env: node.env,
          doc: node.doc,
          default: node.secret ? '' : node.default,
        });
      else walk(node, [...path, key]);
    }
  };
  walk(configSchema, []);
  return rows;
}
