/**
 * `agent-streams sink <topology>`: the Kafka → ClickHouse connector for a fleet's findings, alerts and digests, as
 * one consumer-group member (start it N times for N members). SIGTERM flushes, commits and leaves.
 */
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { loadConfig, redactConfig } from '../../runtime/config/index.ts';
import { createLogger, eventLog, installProcessLogger } from '../../runtime/observability/log.ts';
import { createMetrics } from '../../runtime/observability/metrics.ts';
import { runClickHouseSink, type RecordMapping } from '../../sinks/clickhouse/topic-sink.ts';
import type { EventLog } from '../../runtime/observability/log.ts';
import { AlertType, type Alert } from '../../schemas/generated/types.ts';
import { fleetSinkTopics } from '../../sinks/clickhouse/fleet-rows.ts';
import { migrateDatabase } from '../../sinks/clickhouse/schema.ts';
import { serveMember } from '../../runtime/observability/server.ts';
import { observedFleetMappings } from '../../sinks/clickhouse/fleet-metrics.ts';
import { loadTopology } from './run.ts';
import { projectRoot } from '../paths.ts';
import { expectPositionals } from '../args.ts';
import type { Command } from '../main.ts';

/**
 * One `alert.sunk` line per alert the sink writes (alerts are few: each costs an LLM call), with its id, findings
 * and source offset, so an alert in ClickHouse can be found in the logs and, through its trace, back to its input.
 */
function loggedAlerts(mappings: Record<string, RecordMapping>, log: EventLog): Record<string, RecordMapping> {
  const alerts = mappings[AlertType];
  if (!alerts) return mappings;
  return {
    ...mappings,
    [AlertType]: {
      table: alerts.table,
      toRows(value, meta) {
        const rows = alerts.toRows(value, meta);
        const alert = value as Alert;
        log('alert.sunk', { alertId: alert.alertId, findingIds: alert.findingIds, severity: alert.severity, table: alerts.table, topic: meta.topic, partition: meta.partition, offset: meta.offset });
        return rows;
      },
    } satisfies RecordMapping,
  };
}

export const sinkCommand: Command = {
  summary: "Sink a fleet's findings, alerts and digests from Kafka into ClickHouse (batched, idempotent)",
  usage: 'sink <topology-file>',
  options: {},
  files: true,
  async run(args) {
    const { positionals } = parseArgs({ args, allowPositionals: true, options: {} });
    const [file] = expectPositionals('sink', positionals, ['topology-file']) as [string];
    const config = loadConfig();
    const topology = await loadTopology(file);
    const instanceId = randomUUID().slice(0, 8);
    const log = eventLog(installProcessLogger(createLogger({ application: topology.application, processor: 'clickhouse-sink', instance: instanceId, config })));
    log('starting', { topology: file, config: redactConfig(config) });
    // A sink with its own least-privilege user cannot create tables: the admin runs `migrate` before it starts.
    if (config.clickhouse.sinkUser === '') await migrateDatabase(config, projectRoot);
    const metrics = createMetrics({ defaultLabels: { application: topology.application } });
    const name = `${topology.application}.clickhouse-sink`;
    const handle = await runClickHouseSink({
      config,
      name,
      topics: fleetSinkTopics(topology),
      deadLetterTopic: topology.deadLetterTopic,
      mappings: loggedAlerts(observedFleetMappings(metrics), log),
      metrics,
      log,
      instanceId,
    });
    // Live until a fatal ClickHouse error stopped it, its consumer crashed for good, or records wait and no batch
    // completes (the platform restarts it then); ready while it runs joined and not rebalancing.
    const server = await serveMember({ name, check: 'sink', member: handle, metrics, listen: config.metrics });
    log('started', { topics: fleetSinkTopics(topology), metricsPort: server.port });
    await new Promise<void>((done) => {
      const shutdown = (): void => void handle.stop().then(() => server.close()).then(() => done());
      process.once('SIGTERM', shutdown);
      process.once('SIGINT', shutdown);
    });
    log('stopped');
    return 0;
  },
};
