/**
 * The one configuration schema. Every setting is declared here once, with the environment variable that sets
 * it, its parser and its default; the `Config` type is derived from this declaration, never written twice.
 */
import { parse, setting, type Setting } from './settings.ts';

export const configSchema = {
  kafka: {
    brokers: setting({
      env: 'AS_KAFKA_BROKERS',
      doc: 'Kafka bootstrap servers, comma-separated host:port',
      parse: parse.hostPorts,
      default: ['127.0.0.1:19092'],
    }),
    client: setting({
      env: 'AS_KAFKA_CLIENT',
      doc: "Kafka client library behind the runtime's port: kafkajs (default), platformatic (@platformatic/kafka) or confluent (@confluentinc/kafka-javascript, librdkafka); see docs/kafka-clients.md",
      parse: parse.oneOf('kafkajs', 'platformatic', 'confluent'),
      default: 'kafkajs',
    }),
    clientId: setting({
      env: 'AS_KAFKA_CLIENT_ID',
      doc: 'Kafka client id prefix',
      parse: parse.string,
      default: 'agent-streams',
    }),
    ssl: setting({ env: 'AS_KAFKA_SSL', doc: 'Use TLS to reach the brokers', parse: parse.bool, default: false }),
    sslCaFile: setting({
      env: 'AS_KAFKA_SSL_CA_FILE',
      doc: "PEM file of the CA(s) that signed the brokers' certificates (empty: the system CAs); needs AS_KAFKA_SSL=true",
      parse: parse.string,
      default: '',
    }),
    sslCertFile: setting({
      env: 'AS_KAFKA_SSL_CERT_FILE',
      doc: 'PEM client certificate for mutual TLS (with AS_KAFKA_SSL_KEY_FILE)',
      parse: parse.string,
      default: '',
    }),
    sslKeyFile: setting({
      env: 'AS_KAFKA_SSL_KEY_FILE',
      doc: 'PEM private key of the client certificate (unencrypted; keep the file readable by the process only)',
      parse: parse.string,
      default: '',
    }),
    saslMechanism: setting({
      env: 'AS_KAFKA_SASL_MECHANISM',
      doc: 'SASL mechanism: none, plain, scram-sha-256 or scram-sha-512',
      parse: parse.oneOf('none', 'plain', 'scram-sha-256', 'scram-sha-512'),
      default: 'none',
    }),
    saslUsername: setting({ env: 'AS_KAFKA_SASL_USERNAME', doc: 'SASL user name', parse: parse.string, default: '' }),
    saslPassword: setting({
      env: 'AS_KAFKA_SASL_PASSWORD',
      doc: 'SASL password',
      parse: parse.string,
      default: '',
      secret: true,
    }),
    outageToleranceMs: setting({
      env: 'AS_KAFKA_OUTAGE_TOLERANCE_MS',
      doc: 'How long producers outside a transaction (connectors, dead letters, re-drive) keep retrying a broker that cannot be reached before they fail with a clear error, in ms',
      parse: parse.int(0, 3_600_000),
      default: 60_000,
    }),
  },
  registry: {
    url: setting({
      env: 'AS_REGISTRY_URL',
      doc: 'Confluent-compatible schema registry base URL',
      parse: parse.url('http:', 'https:'),
      default: 'http://127.0.0.1:18081/apis/ccompat/v7',
    }),
    username: setting({
      env: 'AS_REGISTRY_USERNAME',
      doc: 'Registry basic-auth user',
      parse: parse.string,
      default: '',
    }),
    password: setting({
      env: 'AS_REGISTRY_PASSWORD',
      doc: 'Registry basic-auth password',
      parse: parse.string,
      default: '',
      secret: true,
    }),
  },
  redis: {
    url: setting({
      env: 'AS_REDIS_URL',
      doc: "Redis URL (redis:// or rediss://) with the fleet's ACL user and password; the default is the local stack's user (stack up creates it)",
      parse: parse.url('redis:', 'rediss:'),
      default: 'redis://agent-streams:agent-streams-local@127.0.0.1:16379',
      secret: true,
    }),
  },
  clickhouse: {
    url: setting({
      env: 'AS_CLICKHOUSE_URL',
      doc: 'ClickHouse HTTP interface URL',
      parse: parse.url('http:', 'https:'),
      default: 'http://127.0.0.1:18123',
    }),
    username: setting({ env: 'AS_CLICKHOUSE_USER', doc: 'ClickHouse user', parse: parse.string, default: 'default' }),
    password: setting({
      env: 'AS_CLICKHOUSE_PASSWORD',
      doc: 'ClickHouse password',
      parse: (raw) => raw,
      default: '',
      secret: true,
    }),
    sinkUser: setting({
      env: 'AS_CLICKHOUSE_SINK_USER',
      doc: 'ClickHouse user the sink and the LLM audit insert as (INSERT into the fleet database only); empty: AS_CLICKHOUSE_USER. With it set, `sink` does not migrate: run `migrate` as the admin user',
      parse: parse.string,
      default: '',
    }),
    sinkPassword: setting({
      env: 'AS_CLICKHOUSE_SINK_PASSWORD',
      doc: 'Password of AS_CLICKHOUSE_SINK_USER',
      parse: (raw) => raw,
      default: '',
      secret: true,
    }),
    readerUser: setting({
      env: 'AS_CLICKHOUSE_READER_USER',
      doc: 'ClickHouse user of the query commands (findings, alerts, digest): SELECT only; empty: AS_CLICKHOUSE_USER',
      parse: parse.string,
      default: '',
    }),
    readerPassword: setting({
      env: 'AS_CLICKHOUSE_READER_PASSWORD',
      doc: 'Password of AS_CLICKHOUSE_READER_USER',
      parse: (raw) => raw,
      default: '',
      secret: true,
    }),
    database: setting({
      env: 'AS_CLICKHOUSE_DATABASE',
      doc: 'ClickHouse database for findings, alerts, digests and the LLM audit',
      parse: (raw) => {
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(raw))
          throw new Error(`expected an identifier ([A-Za-z_][A-Za-z0-9_]*), got "${raw}"`);
        return raw;
      },
      default: 'agent_streams',
    }),
  },
  anthropic: {
    apiKey: setting({
      env: 'ANTHROPIC_API_KEY',
      doc: 'Anthropic API key; without it the fleet runs rules-only',
      parse: parse.string,
      default: '',
      secret: true,
    }),
    analystApiKey: setting({
      env: 'AS_ANTHROPIC_API_KEY_ANALYST',
      doc: 'Anthropic API key of the alert analyst only (default: ANTHROPIC_API_KEY); scoped keys can be revoked and billed per agent type',
      parse: parse.string,
      default: '',
      secret: true,
    }),
    digestApiKey: setting({
      env: 'AS_ANTHROPIC_API_KEY_DIGEST',
      doc: 'Anthropic API key of the digest agent only (default: ANTHROPIC_API_KEY)',
      parse: parse.string,
      default: '',
      secret: true,
    }),
    baseUrl: setting({
      env: 'ANTHROPIC_BASE_URL',
      doc: 'Anthropic API base URL (tests point it at a local stand-in)',
      parse: parse.url('http:', 'https:'),
      default: 'https://api.anthropic.com',
    }),
  },
  llm: {
    tokensPerHour: setting({
      env: 'AS_LLM_TOKENS_PER_HOUR',
      doc: 'LLM token budget per agent type and hour (reserved before each call, never exceeded)',
      parse: parse.int(0, 1_000_000_000),
      default: 200_000,
    }),
    concurrency: setting({
      env: 'AS_LLM_CONCURRENCY',
      doc: 'LLM requests in flight per process',
      parse: parse.int(1, 64),
      default: 4,
    }),
    timeoutMs: setting({
      env: 'AS_LLM_TIMEOUT_MS',
      doc: 'How long one LLM request may take before it counts as timed out (and is retried or falls back)',
      parse: parse.int(100, 600_000),
      default: 30_000,
    }),
    cacheTtl: setting<'auto' | '5m' | '1h'>({
      env: 'AS_LLM_CACHE_TTL',
      doc: 'TTL of the prompt cache entries LLM calls write: auto (1h while calls of a model and prefix come more than ~5 min apart, else 5m), 5m or 1h',
      parse: parse.oneOf('auto', '5m', '1h'),
      default: 'auto',
    }),
  },
  stack: {
    dir: setting({
      env: 'AS_STACK_DIR',
      doc: 'Where the local stack keeps data, logs and pid files',
      parse: parse.string,
      default: '.stack',
    }),
    cacheDir: setting({
      env: 'AS_CACHE_DIR',
      doc: 'Where downloaded artefacts are cached',
      parse: parse.string,
      default: '.cache',
    }),
    kafkaPort: setting({
      env: 'AS_STACK_KAFKA_PORT',
      doc: 'Local Kafka client port',
      parse: parse.port,
      default: 19092,
    }),
    kafkaControllerPort: setting({
      env: 'AS_STACK_KAFKA_CONTROLLER_PORT',
      doc: 'Local KRaft controller port',
      parse: parse.port,
      default: 19093,
    }),
    kafkaSecurePort: setting({
      env: 'AS_STACK_KAFKA_SECURE_PORT',
      doc: 'Local Kafka SASL_SSL port, opened next to the plaintext one by `stack up --secure`',
      parse: parse.port,
      default: 19192,
    }),
    registryPort: setting({
      env: 'AS_STACK_REGISTRY_PORT',
      doc: 'Local schema registry port',
      parse: parse.port,
      default: 18081,
    }),
    redisPort: setting({ env: 'AS_STACK_REDIS_PORT', doc: 'Local Redis port', parse: parse.port, default: 16379 }),
    redisAdminPassword: setting({
      env: 'AS_STACK_REDIS_ADMIN_PASSWORD',
      doc: "Password of the local Redis's `default` (admin) user; the fleet connects as the ACL user of AS_REDIS_URL instead",
      parse: parse.string,
      default: 'agent-streams-admin-local',
      secret: true,
    }),
    clickhouseHttpPort: setting({
      env: 'AS_STACK_CLICKHOUSE_HTTP_PORT',
      doc: 'Local ClickHouse HTTP port',
      parse: parse.port,
      default: 18123,
    }),
    clickhouseTcpPort: setting({
      env: 'AS_STACK_CLICKHOUSE_TCP_PORT',
      doc: 'Local ClickHouse native port',
      parse: parse.port,
      default: 19000,
    }),
    readyTimeoutSeconds: setting({
      env: 'AS_STACK_READY_TIMEOUT',
      doc: 'Seconds `stack up` waits for each service to become ready',
      parse: parse.int(5, 3600),
      default: 180,
    }),
  },
  consumer: {
    maxBytesPerPartition: setting({
      env: 'AS_CONSUMER_MAX_BYTES_PER_PARTITION',
      doc: 'Most bytes fetched per partition per request: bounds memory and batch size',
      parse: parse.int(1024, 64 * 1024 * 1024),
      default: 1024 * 1024,
    }),
    sessionTimeoutMs: setting({
      env: 'AS_CONSUMER_SESSION_TIMEOUT_MS',
      doc: 'Group session timeout: how long a dead member keeps its partitions',
      parse: parse.int(6000, 300_000),
      default: 10_000,
    }),
  },
  commit: {
    intervalMs: setting({
      env: 'AS_COMMIT_INTERVAL_MS',
      doc: "How long a partition's batches gather in one Kafka transaction before it commits (ms), like Kafka Streams' commit.interval.ms: fewer, larger transactions, outputs visible up to this much later; 0 (the default) commits every fetched batch",
      parse: parse.int(0, 60_000),
      default: 0,
    }),
    maxRecords: setting({
      env: 'AS_COMMIT_MAX_RECORDS',
      doc: 'A partition commits its open transaction early once it holds this many input records: bounds the outputs held in memory and what a crash replays',
      parse: parse.int(1, 10_000_000),
      default: 50_000,
    }),
  },
  clock: {
    offsetMs: setting({
      env: 'AS_WALL_CLOCK_OFFSET_MS',
      doc: 'Shifts the wall clock that closes idle windows, in ms (0 = real time). Replaying a recorded day in real time with offset = its start − now closes windows as they closed live; tests use it to reach an hour boundary',
      parse: parse.int(-10 * 365 * 86_400_000, 86_400_000),
      default: 0,
    }),
  },
  records: {
    maxEventTimeAheadMs: setting({
      env: 'AS_MAX_EVENT_TIME_AHEAD_MS',
      doc: 'A record whose event time lies further ahead of the wall clock than this (ms) is dead-lettered instead of advancing stream time; 0 turns the check off',
      parse: parse.int(0, 10 * 365 * 86_400_000),
      default: 86_400_000,
    }),
  },
  health: {
    stallMs: setting({
      env: 'AS_LIVENESS_STALL_MS',
      doc: 'A member whose partitions have records waiting but completed no batch for this long (ms) reports itself not live on /healthz, so the platform restarts it',
      parse: parse.int(1_000, 24 * 3_600_000),
      default: 120_000,
    }),
    producerStuckMs: setting({
      env: 'AS_LIVENESS_PRODUCER_STUCK_MS',
      doc: 'A Kafka producer call (send, sendOffsets, commit, abort) that has not returned for this long (ms) makes /healthz report the process not live: a transactional producer stuck on a broker that stopped answering',
      parse: parse.int(1_000, 24 * 3_600_000),
      default: 120_000,
    }),
  },
  log: {
    level: setting({
      env: 'AS_LOG_LEVEL',
      doc: 'Lowest level written to the JSON log on stdout: fatal, error, warn, info, debug, trace or silent',
      parse: parse.oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'),
      default: 'info',
    }),
  },
  metrics: {
    host: setting({
      env: 'AS_METRICS_HOST',
      doc: 'Address /metrics, /healthz and /readyz listen on: loopback by default so nothing is exposed off-host by accident; the container image sets 0.0.0.0 so Prometheus and the kubelet can reach it',
      parse: (raw) => {
        const value = raw.trim();
        if (!/^(\[?[0-9a-fA-F:]+\]?|[A-Za-z0-9.-]+)$/.test(value))
          throw new Error(`expected a host name or IP address, got "${raw}"`);
        return value.replace(/^\[(.*)\]$/, '$1');
      },
      default: '127.0.0.1',
    }),
    port: setting({
      env: 'AS_METRICS_PORT',
      doc: 'Port for /metrics, /healthz and /readyz (default 9464, as the OpenTelemetry Prometheus exporter; 0 picks a free one, as launchers of many members on one machine do)',
      parse: parse.int(0, 65535),
      default: 9464,
    }),
    lagIntervalMs: setting({
      env: 'AS_METRICS_LAG_INTERVAL_MS',
      doc: "How often a member reads its group's committed offsets and the partitions' end offsets from the broker to report consumer lag (ms)",
      parse: parse.int(200, 3_600_000),
      default: 10_000,
    }),
  },
} as const;

type SchemaNode = { readonly [key: string]: Setting<unknown> | SchemaNode };
export type ConfigOf<S> = { readonly [K in keyof S]: S[K] extends Setting<infer T> ? T : ConfigOf<S[K]> };

export type ConfigSchema = typeof configSchema;
export type Config = ConfigOf<ConfigSchema>;
export type { SchemaNode };
