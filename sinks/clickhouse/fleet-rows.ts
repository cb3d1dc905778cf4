/**
 * The fleet's topics as ClickHouse rows: findings (market-wide and per portfolio), alerts and digests. As with
 * findings, every column is a function of the Kafka record alone (`created_at` from its timestamp, `version` from
 * its offset), so a record sunk twice is the identical row twice and FINAL shows it once.
 */
import type { Alert, Digest, Finding } from '../../schemas/generated/types.ts';
import type { Topology } from '../../runtime/topology/topology.ts';
import { findingRow, versionOf } from './finding-row.ts';
import { mapTo, type RecordMapping, type RecordMeta } from './topic-sink.ts';

const seconds = (ms: number): number => Math.floor(ms / 1000);

export function alertRow(alert: Alert, meta: RecordMeta) {
  const writtenAtMs = Number(meta.timestamp);
  return {
    alert_id: alert.alertId,
    finding_ids: alert.findingIds,
    symbol: alert.symbol,
    portfolio_id: alert.portfolioId,
    severity: alert.severity,
    window_start: seconds(alert.windowStart),
    analysis: alert.analysis,
    recommended_action: alert.recommendedAction,
    model: alert.model,
    // Alerts written before the field existed decode with its default (false, ''), as the columns' defaults say.
    model_disagreed: alert.modelDisagreed ? 1 : 0,
    rules_analysis: alert.rulesAnalysis,
    created_at: seconds(writtenAtMs),
    version: versionOf(meta),
  };
}

export function digestRow(digest: Digest, meta: RecordMeta) {
  const writtenAtMs = Number(meta.timestamp);
  return {
    digest_id: digest.digestId,
    portfolio_id: digest.portfolioId,
    hour_start: seconds(digest.hourStart),
    summary: digest.summary,
    finding_count: digest.findingCount,
    alert_count: digest.alertCount,
    model: digest.model,
    created_at: seconds(writtenAtMs),
    version: versionOf(meta),
  };
}

export const fleetMappings: Record<string, RecordMapping> = {
  'agentstreams.fleet.Finding': mapTo<Finding>('findings', findingRow),
  'agentstreams.fleet.Alert': mapTo<Alert>('alerts', alertRow),
  'agentstreams.fleet.Digest': mapTo<Digest>('digests', digestRow),
};

/** The topics a topology's ClickHouse sink reads, as it declares them (`sink.clickhouse.topics`). */
export function fleetSinkTopics(topology: Topology): string[] {
  return [...(topology.sink?.clickhouse?.topics ?? [])];
}
