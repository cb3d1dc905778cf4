/**
 * `agent-streams ingest`: the HTTP ingest gateway on 127.0.0.1. API keys come from AS_INGEST_API_KEYS=key1,key2;
 * without them it refuses to start. SIGTERM/SIGINT stop accepting, finish requests in progress and flush.
 */
import { parseArgs } from 'node:util';
import { randomUUID } from 'node:crypto';
import { loadConfig, redactConfig } from '../../runtime/config/index.ts';
import { createLogger, eventLog, installProcessLogger, lineLog } from '../../runtime/observability/log.ts';
import { openMarketProducer } from '../../connectors/market-producer.ts';
import {
  apiKeysFromEnv,
  DEFAULT_INGEST_PORT,
  startIngestGateway,
  type IngestGateway,
} from '../../connectors/http-ingest.ts';
import { createMetrics } from '../../runtime/observability/metrics.ts';
import { startObservabilityServer, type ObservabilityServer } from '../../runtime/observability/server.ts';
import { usageError } from '../args.ts';
import type { Command } from '../main.ts';

const options = {
  port: { type: 'string' },
  host: { type: 'string' },
  rate: { type: 'string' },
  burst: { type: 'string' },
  'max-body': { type: 'string' },
  'max-events': { type: 'string' },
  'max-symbols': { type: 'string' },
  'max-pending': { type: 'string' },
  'max-connections': { type: 'string' },
  'transactional-id': { type: 'string' },
  topic: { type: 'string' },
  partitions: { type: 'string' },
} as const;

export const ingestCommand: Command = {
  summary:
    'Run the HTTP ingest gateway: POST /v1/events/{type} (JSON, API key, rate-limited, schema-validated) → market.events',
  usage: `ingest [--port ${DEFAULT_INGEST_PORT}] [--host 127.0.0.1] [--rate 1000] [--burst N] [--max-body 1048576] [--max-events 1000] [--max-symbols 20] [--max-pending 64] [--max-connections 256] [--transactional-id ID] [--topic market.events] [--partitions 6]   (keys: AS_INGEST_API_KEYS=key1,key2)`,
  options,
  async run(args) {
    const parsed = parseArgs({ args, options });
    const { values } = parsed;
    const numeric = (name: string, raw: string | undefined): number | undefined => {
      if (raw === undefined) return undefined;
      const value = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(value)) throw usageError(`--${name} takes a number, got "${raw}"`);
      return value;
    };
    const apiKeys = apiKeysFromEnv();
    if (apiKeys.length === 0)
      throw usageError(
        'set AS_INGEST_API_KEYS=key1,key2 (comma-separated, each at least 16 characters); the gateway never runs without keys',
      );
    const config = loadConfig();
    // The gateway belongs to no topology: its application is the client-id prefix. API keys are secrets too.
    const logger = installProcessLogger(
      createLogger({
        application: config.kafka.clientId,
        processor: 'ingest',
        instance: randomUUID().slice(0, 8),
        config,
        secrets: apiKeys,
      }),
    );
    const log = eventLog(logger);
    log('starting', { config: redactConfig(config) });
    const partitions = numeric('partitions', values.partitions);
    const producer = await openMarketProducer(config, {
      clientId: 'ingest',
      // One transaction per group of requests: a request is all or nothing, so a client's retry after 503 duplicates nothing.
      transactional: values['transactional-id'] !== undefined ? { id: values['transactional-id'] } : true,
      ...(values.topic !== undefined ? { topic: values.topic } : {}),
      ...(partitions !== undefined ? { partitions } : {}),
      log: lineLog(logger, 'producer'),
    });
    const port = numeric('port', values.port);
    const rate = numeric('rate', values.rate);
    const burst = numeric('burst', values.burst);
    const maxBody = numeric('max-body', values['max-body']);
    const maxEvents = numeric('max-events', values['max-events']);
    const maxSymbols = numeric('max-symbols', values['max-symbols']);
    const maxPending = numeric('max-pending', values['max-pending']);
    const maxConnections = numeric('max-connections', values['max-connections']);
    const metrics = createMetrics();
    let gateway: IngestGateway;
    let server: ObservabilityServer;
    try {
      gateway = await startIngestGateway({
        producer,
        apiKeys,
        ...(port !== undefined ? { port } : {}),
        ...(values.host !== undefined ? { host: values.host } : {}),
        ...(rate !== undefined ? { ratePerSecond: rate } : {}),
        ...(burst !== undefined ? { burst } : {}),
        ...(maxBody !== undefined ? { maxBodyBytes: maxBody } : {}),
        ...(maxEvents !== undefined ? { maxEventsPerRequest: maxEvents } : {}),
        ...(maxSymbols !== undefined ? { maxSymbolsPerStory: maxSymbols } : {}),
        ...(maxPending !== undefined ? { maxPendingRequests: maxPending } : {}),
        ...(maxConnections !== undefined ? { maxConnections } : {}),
        log,
        metrics,
      });
    } catch (error) {
      await producer.close();
      throw error;
    }
    // Live while no produce call hangs past AS_LIVENESS_PRODUCER_STUCK_MS (a broker that stopped answering); ready
    // while live, reaching Kafka (in an outage requests are answered 503 anyway) and not stopping. A Kafka outage
    // longer than kafka.outageToleranceMs ends the process (below).
    let stopping = false;
    const health = (): { live: boolean; ready: boolean; problems: string[] } => {
      const problems: string[] = [];
      const busyMs = producer.busyForMs;
      if (busyMs > config.health.producerStuckMs)
        problems.push(
          `a produce call has not returned for ${Math.round(busyMs / 1000)} s (bound ${config.health.producerStuckMs / 1000} s)`,
        );
      const live = problems.length === 0;
      if (!producer.available) problems.push('Kafka is unavailable: requests are answered 503');
      if (stopping) problems.push('stopping');
      return { live, ready: live && producer.available && !stopping, problems };
    };
    metrics.memberReady.sampleWith(() => metrics.memberReady.set({ processor: 'ingest' }, health().ready ? 1 : 0));
    metrics.memberLive.sampleWith(() => metrics.memberLive.set({ processor: 'ingest' }, health().live ? 1 : 0));
    try {
      server = await startObservabilityServer({
        port: config.metrics.port,
        host: config.metrics.host,
        metrics,
        health: () => {
          const { live, problems } = health();
          return { healthy: live, checks: { gateway: { healthy: live, detail: problems.join('; ') || gateway.url } } };
        },
        ready: () => health().ready,
      });
    } catch (error) {
      await gateway.close();
      await producer.close();
      throw error;
    }
    log('listening', {
      url: gateway.url,
      topic: producer.topic,
      partitions: producer.partitions,
      keys: apiKeys.length,
      metricsPort: server.port,
    });
    // Kafka away for longer than kafka.outageToleranceMs ends the gateway with AS_BROKER_UNAVAILABLE (exit 1).
    const failure = await new Promise<Error | undefined>((done) => {
      process.once('SIGINT', () => done(undefined));
      process.once('SIGTERM', () => done(undefined));
      producer.onFailed((error) => done(error));
    });
    stopping = true;
    log(failure ? 'failing' : 'stopping', failure ? { error: failure.message } : {});
    await gateway.close();
    await producer.close().catch(() => undefined);
    await server.close();
    log('stopped', { gateway: gateway.stats, producer: producer.stats });
    if (failure) throw failure;
    return 0;
  },
};
