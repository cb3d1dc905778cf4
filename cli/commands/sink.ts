/**
 * `agent-streams sink <topology>`: the Kafka → ClickHouse connector for what the topology declares under
 * `sink.clickhouse` (its topics, and the rows their record types become), as one consumer-group member (start it N
 * times for N members). SIGTERM flushes, commits and leaves.
 */
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { loadConfig, redactConfig } from '../../runtime/config/index.ts';
import { createLogger, eventLog, installProcessLogger } from '../../runtime/observability/log.ts';
import { createMetrics } from '../../runtime/observability/metrics.ts';
import { runClickHouseSink } from '../../sinks/clickhouse/topic-sink.ts';
import { migrateDatabase } from '../../sinks/clickhouse/schema.ts';
import { serveMember } from '../../runtime/observability/server.ts';
import { AgentStreamsError, ErrorCode } from '../../runtime/errors.ts';
import { loadTopology } from './run.ts';
import { projectRoot } from '../paths.ts';
import { expectPositionals } from '../args.ts';
import type { Command } from '../main.ts';

export const sinkCommand: Command = {
  summary: 'Sink the topics a topology declares (sink.clickhouse) from Kafka into ClickHouse (batched, idempotent)',
  usage: 'sink <topology-file>',
  options: {},
  files: true,
  async run(args) {
    const { positionals } = parseArgs({ args, allowPositionals: true, options: {} });
    const [file] = expectPositionals('sink', positionals, ['topology-file']) as [string];
    const config = loadConfig();
    const topology = await loadTopology(file);
    const declared = topology.sink?.clickhouse;
    if (!declared || declared.topics.length === 0) {
      throw new AgentStreamsError(
        ErrorCode.TOPOLOGY_INVALID,
        `topology ${topology.application} (${file}) declares no ClickHouse sink; add sink: { clickhouse: { topics: [...], mappings: { [recordType]: mapTo(table, toRow) } } } to its defineTopology()`,
      );
    }
    const instanceId = randomUUID().slice(0, 8);
    const log = eventLog(
      installProcessLogger(
        createLogger({ application: topology.application, processor: 'clickhouse-sink', instance: instanceId, config }),
      ),
    );
    log('starting', { topology: file, config: redactConfig(config) });
    // A sink with its own least-privilege user cannot create tables: the admin runs `migrate` before it starts.
    if (config.clickhouse.sinkUser === '') await migrateDatabase(config, projectRoot);
    const metrics = createMetrics({ defaultLabels: { application: topology.application } });
    const name = `${topology.application}.clickhouse-sink`;
    const handle = await runClickHouseSink({
      config,
      name,
      topics: [...declared.topics],
      deadLetterTopic: topology.deadLetterTopic,
      mappings: typeof declared.mappings === 'function' ? declared.mappings({ metrics, log }) : declared.mappings,
      metrics,
      log,
      instanceId,
    });
    // Live until a fatal ClickHouse error stopped it, its consumer crashed for good, or records wait and no batch
    // completes (the platform restarts it then); ready while it runs joined and not rebalancing.
    const server = await serveMember({ name, check: 'sink', member: handle, metrics, listen: config.metrics });
    log('started', { topics: declared.topics, metricsPort: server.port });
    await new Promise<void>((done) => {
      const shutdown = (): void =>
        void handle
          .stop()
          .then(() => server.close())
          .then(() => done());
      process.once('SIGTERM', shutdown);
      process.once('SIGINT', shutdown);
    });
    log('stopped');
    return 0;
  },
};
