/**
 * The one logger: pino, one JSON line per entry on stdout. Every line carries `level`, `time`, `application`,
 * `processor` and `instance` (bindings of the process's root logger), the active OpenTelemetry span's `trace_id`
 * and `span_id` (read only; nothing here sets up tracing), and what the call site adds: an `event` name (the key
 * cli/fleet.ts and the tests parse), topic/partition/offset, finding or alert ids.
 *
 * Secrets never reach the output, whatever a call site passes: pino's `redact` censors known secret fields, and
 * every serialized line is scrubbed of the configured secret values and of passwords inside URLs (an error that
 * echoes `redis://user:secret@host`) just before it is written.
 *
 * Runtime modules keep their `log(event, fields)` / `log(line)` callbacks; `eventLog` and `lineLog` back them with
 * a logger, choosing the level from the event, so the modules need no logger of their own.
 */
import { hostname } from 'node:os';
import { context, trace, isSpanContextValid } from '@opentelemetry/api';
import { logLevel as KafkaLogLevel, type logCreator } from 'kafkajs';
import { pino, type DestinationStream, type Level, type Logger } from 'pino';
import { loadConfig, secretSettingPaths, secretValues } from '../config/index.ts';
import type { Config } from '../config/index.ts';

export type { Logger } from 'pino';
export type LogFields = Record<string, unknown>;
/** The callback runtime modules take: an event name (dotted, e.g. `batch.error`) and structured fields. */
export type EventLog = (event: string, fields?: LogFields) => void;
/** The callback older modules take: one human sentence. */
export type LineLog = (line: string) => void;

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const CENSOR = '***';

/** Field names that hold secrets wherever they appear (one level deep, and in request headers). */
const SECRET_FIELDS = ['password', 'saslPassword', 'apiKey', 'apiKeys', 'token', 'authorization', 'secret'];

export interface CreateLoggerOptions {
  /** The topology's application (or `agent-streams` for commands outside one). */
  application: string;
  /** The processor this process runs (`router`, `clickhouse-sink`, `ingest`, `feed`, …). */
  processor: string;
  /** This process's member id (the runner's instance id); defaults to the host name and pid. */
  instance?: string;
  /** Its secret settings are scrubbed from every line, and its `log.level` applies. */
  config?: Config;
  /** More secret values to scrub (e.g. the ingest gateway's API keys). */
  secrets?: readonly string[];
  level?: LogLevel;
  /** Where lines go (default: stdout, written synchronously so nothing is lost at exit). Tests pass a collector. */
  destination?: DestinationStream;
}

/** For commands whose stdout is their output (feed --stdout, replay's summary): the log goes to stderr. */
export function stderrDestination(): DestinationStream {
  return pino.destination({ dest: 2, sync: true });
}

/** Replaces every secret (raw and as it appears inside a JSON string) and every password in a URL by `***`. */
export function secretScrubber(secrets: readonly string[]): (text: string) => string {
  // Short values would censor ordinary words; a secret that short is not a secret anyway.
  const needles = [
    ...new Set(
      secrets.filter((s) => s.length >= 4).flatMap((s) => [s, JSON.stringify(s).slice(1, -1), encodeURIComponent(s)]),
    ),
  ].sort((a, b) => b.length - a.length);
  return (text) => {
    let out = text.replace(/([a-z][a-z0-9+.-]*:\/\/[^\s:/@"]*):([^\s/@"]+)@/gi, `$1:${CENSOR}@`);
    for (const needle of needles) if (out.includes(needle)) out = out.split(needle).join(CENSOR);
    return out;
  };
}

/** The active span's ids, when a tracing SDK is registered and a span is current (nothing otherwise). */
function traceFields(): LogFields {
  const span = trace.getSpan(context.active());
  if (!span) return {};
  const spanContext = span.spanContext();
  return isSpanContextValid(spanContext) ? { trace_id: spanContext.traceId, span_id: spanContext.spanId } : {};
}

export function createLogger(options: CreateLoggerOptions): Logger {
  const scrub = secretScrubber([...(options.config ? secretValues(options.config) : []), ...(options.secrets ?? [])]);
  // Secret URLs (a Redis URL with a password) are left to the scrub, which masks the password and keeps the host.
  const configPaths = secretSettingPaths()
    .filter((path) => !path.endsWith('.url'))
    .flatMap((path) => [`config.${path}`, path]);
  return pino(
    {
      level: options.level ?? options.config?.log.level ?? 'info',
      base: {
        application: options.application,
        processor: options.processor,
        instance: options.instance ?? `${hostname()}-${process.pid}`,
      },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      mixin: traceFields,
      redact: {
        paths: [
          ...SECRET_FIELDS,
          ...SECRET_FIELDS.map((f) => `*.${f}`),
          'headers["x-api-key"]',
          '*.headers["x-api-key"]',
          '*.headers.authorization',
          ...configPaths,
        ],
        censor: CENSOR,
      },
      hooks: { streamWrite: scrub },
    },
    options.destination ?? pino.destination({ dest: 1, sync: true }),
  );
}

const ERROR_EVENT = /crash|error|fail/;
const WARN_EVENT =
  /retry|fenced|dead-letter|timeout|unavailable|rejected|refused|stall|deadline|lost|stuck|stopping-late/;

/** The level an event is logged at, read from its name: failures are errors, retries and fencing warnings. */
export function levelOfEvent(event: string): Level {
  if (ERROR_EVENT.test(event)) return 'error';
  if (WARN_EVENT.test(event)) return 'warn';
  return 'info';
}

/** A `log(event, fields)` callback writing to `logger`, at the level the event's name implies. */
export function eventLog(logger: Logger): EventLog {
  return (event, fields = {}) => logger[levelOfEvent(event)]({ ...fields, event });
}

const WARN_LINE = /unreachable|unavailable|failed|refused|error|→ open|dropped|rules-only/i;

/** A `log(line)` callback writing each sentence as `msg` under `event`, as a warning when it reports trouble. */
export function lineLog(logger: Logger, event: string): LineLog {
  return (line) => logger[WARN_LINE.test(line) ? 'warn' : 'info']({ event }, line);
}

const KAFKA_LEVELS: Record<number, Level> = {
  [KafkaLogLevel.ERROR]: 'error',
  [KafkaLogLevel.WARN]: 'warn',
  [KafkaLogLevel.INFO]: 'info',
  [KafkaLogLevel.DEBUG]: 'debug',
};

/**
 * kafkajs' logs through a logger (default: the process logger at the time of each entry, so clients made before
 * the command installed its logger still log through it). kafkajs filters by its own level first (see kafkaClient).
 */
export function kafkaLogCreator(logger: () => Logger = processLogger): logCreator {
  return () =>
    ({ namespace, level, log }) => {
      const {
        message,
        timestamp: _timestamp,
        logger: _logger,
        stack: _stack,
        ...extra
      } = log as { message: string; timestamp?: string; logger?: string; stack?: string } & LogFields;
      // Every producer here uses kafkajs' default (Java-compatible murmur2) partitioner on purpose: its once-per-process
      // migration notice says nothing an operator can act on.
      if (message.startsWith('KafkaJS v2.0.0 switched default partitioner')) return;
      // A broker's error answer to one request ("Response Metadata…: This server does not host this topic-partition"
      // while a topic is created, "rebalancing" while a group joins) is handled by kafkajs' retries or reaches our
      // code as an error that is logged there: at `error` it would cry wolf in every start-up.
      const answered = level === KafkaLogLevel.ERROR && namespace === 'Connection' && message.startsWith('Response ');
      logger()[answered ? 'warn' : (KAFKA_LEVELS[level] ?? 'error')](
        { event: 'kafka.log', kafka: { namespace, ...extra } },
        message,
      );
    };
}

/**
 * @clickhouse/client's logger class (it takes a class, not an instance): its warnings and errors go to the process
 * logger. Its arguments carry query ids and settings; the query text stays out (it may hold row data).
 */
export class ClickHouseLogger {
  #write(level: Level, params: { module: string; message: string; args?: Record<string, unknown>; err?: Error }): void {
    const { query: _query, ...args } = params.args ?? {};
    processLogger()[level](
      {
        event: 'clickhouse.log',
        clickhouse: { module: params.module, ...args },
        ...(params.err ? { err: params.err } : {}),
      },
      params.message,
    );
  }
  trace(params: { module: string; message: string; args?: Record<string, unknown> }): void {
    this.#write('trace', params);
  }
  debug(params: { module: string; message: string; args?: Record<string, unknown> }): void {
    this.#write('debug', params);
  }
  info(params: { module: string; message: string; args?: Record<string, unknown> }): void {
    this.#write('info', params);
  }
  warn(params: { module: string; message: string; args?: Record<string, unknown>; err?: Error }): void {
    this.#write('warn', params);
  }
  error(params: { module: string; message: string; args?: Record<string, unknown>; err: Error }): void {
    this.#write('error', params);
  }
}

let installed: Logger | undefined;
let fallback: Logger | undefined;

/** Makes `logger` the process's: kafkajs clients and anything without a logger of its own write through it. */
export function installProcessLogger(logger: Logger): Logger {
  installed = logger;
  return logger;
}

/** The process's logger: the installed one, or a default on stderr (application `agent-streams`, processor from argv). */
export function processLogger(): Logger {
  if (installed) return installed;
  if (!fallback) {
    let config: Config | undefined;
    try {
      config = loadConfig();
    } catch {
      // An invalid configuration is reported by whoever loads it; the logger still scrubs URL passwords.
    }
    // On stderr: a command that installed no logger prints its own output (a table, JSON) on stdout.
    fallback = createLogger({
      application: 'agent-streams',
      processor: process.argv[2] ?? 'agent-streams',
      ...(config ? { config } : {}),
      destination: stderrDestination(),
    });
  }
  return fallback;
}
