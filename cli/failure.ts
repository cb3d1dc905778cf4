/**
 * The CLI's one error path: whatever a command throws becomes one line on stderr that says what failed, why, and
 * what to do, and an exit status — 2 for a usage error (the command line is wrong), 1 for a runtime error.
 * AS_DEBUG=1 adds the stack trace for errors this module does not recognise.
 */
import { AgentStreamsError, ErrorCode } from '../runtime/errors.ts';
import { loadConfig } from '../runtime/config/index.ts';
import { closest } from './args.ts';

export const EXIT_RUNTIME = 1;
export const EXIT_USAGE = 2;

export interface Failure {
  exitCode: typeof EXIT_RUNTIME | typeof EXIT_USAGE;
  line: string;
}

export const STACK_HINT = 'is the stack up? `cli/agent-streams stack status`';

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
]);

type Service = 'Kafka' | 'The schema registry' | 'Redis' | 'ClickHouse';

/** Every error in a cause chain (cause, kafkajs' originalError, AggregateError's errors), outermost first. */
function chain(error: unknown): unknown[] {
  const out: unknown[] = [];
  const queue = [error];
  while (queue.length > 0 && out.length < 16) {
    const e = queue.shift();
    if (e === undefined || e === null || out.includes(e)) continue;
    out.push(e);
    if (typeof e === 'object') {
      const o = e as { cause?: unknown; originalError?: unknown; errors?: unknown };
      queue.push(o.cause, o.originalError);
      if (Array.isArray(o.errors)) queue.push(...o.errors);
    }
  }
  return out;
}

function oneLine(text: string): string {
  return text
    .split('\n')
    .map((l) => l.trim().replace(/^-\s+/, ''))
    .filter((l) => l !== '')
    .join('; ')
    .replace(/:;/g, ':');
}

interface Endpoint {
  service: Service;
  setting: string;
  shown: string;
  ports: Set<number>;
}

function endpoints(): Endpoint[] {
  try {
    const config = loadConfig();
    const port = (url: string, fallback: number): number => Number(new URL(url).port || fallback);
    const redis = new URL(config.redis.url);
    return [
      {
        service: 'Kafka',
        setting: 'AS_KAFKA_BROKERS',
        shown: config.kafka.brokers.join(','),
        ports: new Set(config.kafka.brokers.map((b) => Number(b.slice(b.lastIndexOf(':') + 1)))),
      },
      {
        service: 'The schema registry',
        setting: 'AS_REGISTRY_URL',
        shown: config.registry.url,
        ports: new Set([port(config.registry.url, 80)]),
      },
      {
        service: 'Redis',
        setting: 'AS_REDIS_URL',
        shown: `${redis.protocol}//${redis.host}`,
        ports: new Set([port(config.redis.url, 6379)]),
      },
      {
        service: 'ClickHouse',
        setting: 'AS_CLICKHOUSE_URL',
        shown: config.clickhouse.url,
        ports: new Set([port(config.clickhouse.url, 8123)]),
      },
    ];
  } catch {
    return [];
  }
}

/** Which service an error in the chain failed to reach, from kafkajs' error names, our codes, or the port. */
function unreachable(error: unknown): { endpoint: Endpoint; reason: string } | undefined {
  const errors = chain(error);
  // A network failure: an errno code on the error, kafkajs' connection error, undici's "fetch failed", or — the
  // registry client (mappersmith) reports a refused connection as text — an errno code inside the message.
  const codeIn = (e: unknown): string | undefined => {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && NETWORK_CODES.has(code)) return code;
    return /\b(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN)\b/.exec(
      String((e as Error).message ?? ''),
    )?.[1];
  };
  const network = errors.find(
    (e) =>
      codeIn(e) !== undefined ||
      (e as Error).name === 'KafkaJSConnectionError' ||
      (e as Error).message === 'fetch failed',
  ) as (Error & { code?: string; port?: number; broker?: string }) | undefined;
  const known = endpoints();
  const byService = (service: Service): Endpoint | undefined => known.find((k) => k.service === service);
  const reason = errors.map(codeIn).find((c) => c !== undefined) ?? (network ? oneLine(network.message) : '');
  const ours = (code: ErrorCode): boolean => errors.some((e) => e instanceof AgentStreamsError && e.code === code);
  if (ours(ErrorCode.BROKER_UNAVAILABLE)) {
    const endpoint = byService('Kafka');
    if (endpoint) return { endpoint, reason: reason || 'no broker answered' };
  }
  if (ours(ErrorCode.REGISTRY_UNAVAILABLE)) {
    const endpoint = byService('The schema registry');
    if (endpoint) return { endpoint, reason: reason || 'no answer' };
  }
  if (!network) return undefined;
  if (network.port !== undefined) {
    const endpoint = known.find((k) => k.ports.has(Number(network.port)));
    if (endpoint) return { endpoint, reason };
  }
  if (errors.some((e) => /^KafkaJS/.test((e as Error).name ?? '')) || network.broker !== undefined) {
    const endpoint = byService('Kafka');
    if (endpoint) return { endpoint, reason };
  }
  const text = errors.map((e) => `${(e as Error).message ?? ''}`).join(' ');
  for (const endpoint of known) {
    for (const port of endpoint.ports) if (new RegExp(`:${port}\\b`).test(text)) return { endpoint, reason };
  }
  return undefined;
}

/** A service that answered but refused who we are: the fix is a setting, not the stack. */
function credentialsRefused(error: unknown): string | undefined {
  for (const e of chain(error)) {
    const message = oneLine((e as Error).message ?? '');
    if ((e as Error).name === 'ReplyError' && /^(WRONGPASS|NOAUTH|NOPERM)/.test(message)) {
      return `Redis refused the fleet's user (${message}): check the user and password in AS_REDIS_URL (\`agent-streams stack up redis\` provisions the local one)`;
    }
    if (
      /Authentication failed|password is incorrect|Unknown user|There is no user/i.test(message) &&
      /ClickHouse|Code: (192|193|516)/i.test(`${(e as Error).name} ${message} ${(e as { code?: unknown }).code ?? ''}`)
    ) {
      return `ClickHouse refused the credentials (${message}): check AS_CLICKHOUSE_USER and AS_CLICKHOUSE_PASSWORD (or the sink/reader user settings)`;
    }
  }
  return undefined;
}

function parseArgsFailure(
  error: Error & { code: string },
  command: string | undefined,
  flags: readonly string[],
): string {
  const help = `see 'agent-streams${command ? ` ${command}` : ''} --help'`;
  const quoted = /'([^']+)'/.exec(error.message)?.[1] ?? '';
  switch (error.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION': {
      const flag = quoted.replace(/=.*$/, '');
      // `--json` was dead-letters' flag before every data command took `--format json`.
      const guess =
        flag === '--json' && flags.includes('format')
          ? 'format json'
          : flag.startsWith('--')
            ? closest(flag.slice(2), flags)
            : undefined;
      return `unknown option ${flag}${guess ? ` (did you mean --${guess}?)` : ''}; ${help}`;
    }
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument "${quoted}": this command takes no arguments; ${help}`;
    default:
      return `${oneLine(error.message.split('. ')[0]!).replace(/\.$/, '')}; ${help}`;
  }
}

export function isParseArgsError(error: unknown): error is Error & { code: string } {
  return (
    error instanceof TypeError &&
    typeof (error as { code?: unknown }).code === 'string' &&
    (error as unknown as { code: string }).code.startsWith('ERR_PARSE_ARGS_')
  );
}

/** The line and exit status for anything a command threw. */
export function describeFailure(error: unknown, command: string | undefined, flags: readonly string[] = []): Failure {
  const failure = explain(error, command, flags);
  if (!debugging() || failure.exitCode === EXIT_USAGE || failure.line.includes('\n')) return failure;
  // AS_DEBUG=1: the line, then every error of the cause chain with its stack.
  const causes = chain(error).map((e) => (e instanceof Error ? (e.stack ?? `${e.name}: ${e.message}`) : String(e)));
  return { ...failure, line: `${failure.line}\n${causes.join('\ncaused by: ')}` };
}

function debugging(): boolean {
  return process.env.AS_DEBUG === '1' || process.env.AS_DEBUG === 'true';
}

function explain(error: unknown, command: string | undefined, flags: readonly string[]): Failure {
  const prefix = `agent-streams${command ? ` ${command}` : ''}: `;
  if (isParseArgsError(error)) return { exitCode: EXIT_USAGE, line: prefix + parseArgsFailure(error, command, flags) };
  if (error instanceof AgentStreamsError && error.code === ErrorCode.USAGE) {
    const help = /--help|usage:/i.test(error.message)
      ? ''
      : `; see 'agent-streams${command ? ` ${command}` : ''} --help'`;
    return { exitCode: EXIT_USAGE, line: `${prefix}${oneLine(error.message).replace(/\.$/, '')}${help}` };
  }
  // Our own errors already say what failed and what to do (a TLS or SASL failure names its setting); only an
  // outage, or a client library's raw error, is explained here.
  if (
    error instanceof AgentStreamsError &&
    error.code !== ErrorCode.BROKER_UNAVAILABLE &&
    error.code !== ErrorCode.REGISTRY_UNAVAILABLE &&
    !error.retriable
  ) {
    return { exitCode: EXIT_RUNTIME, line: `${prefix}${error.code}: ${oneLine(error.message)}` };
  }
  const down = unreachable(error);
  if (down) {
    const { endpoint, reason } = down;
    return {
      exitCode: EXIT_RUNTIME,
      line: `${prefix}${endpoint.service} at ${endpoint.shown} is unreachable (${reason}; ${endpoint.setting}): ${STACK_HINT}`,
    };
  }
  const refused = credentialsRefused(error);
  if (refused) return { exitCode: EXIT_RUNTIME, line: prefix + refused };
  if (error instanceof AgentStreamsError)
    return { exitCode: EXIT_RUNTIME, line: `${prefix}${error.code}: ${oneLine(error.message)}` };
  const e = error instanceof Error ? error : new Error(String(error));
  return {
    exitCode: EXIT_RUNTIME,
    line: `${prefix}unexpected ${e.name}: ${oneLine(e.message)}${debugging() ? '' : ' (AS_DEBUG=1 prints the stack trace; please report it)'}`,
  };
}
