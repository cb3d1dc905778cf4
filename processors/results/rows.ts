/**
 * The fleet's results as ClickHouse rows: findings (market-wide and per portfolio) → `findings`, alerts → `alerts`,
 * digests → `digests` (infra/clickhouse/migrations/0002–0004, 0006). The market topology declares these mappings as
 * its `sink.clickhouse` (see ./sink.ts); `agent-streams sink topologies/market-signals.ts` writes them.
 *
 * Everything in a row is a function of the Kafka record alone, so a record inserted twice (after a crash or a
 * rebalance) gives the identical row twice, and FINAL shows it once and exactly as a crash-free run would:
 * `created_at` comes from the record's Kafka timestamp, the moment the agent wrote it, rather than from the sink's
 * clock; `version` from its offset (see `versionOf`).
 */
import { mapTo, type RecordMapping, type RecordMeta } from '../../runtime/index.ts';
import {
  AlertType,
  DigestType,
  FindingType,
  type Alert,
  type Digest,
  type Finding,
  type Severity,
} from '../../schemas/generated/types.ts';

export interface FindingRow {
  finding_id: string;
  agent: string;
  rule: string;
  symbol: string;
  portfolio_id: string;
  severity: Severity;
  /** DateTime columns: whole epoch seconds (docs/clickhouse.md). */
  window_start: number;
  window_end: number;
  event_time: number;
  event_time_ms: number;
  /** Compact JSON (`JSON.stringify`), which is what `visitParamExtract*` can read. */
  evidence: string;
  source_topic: string;
  source_partition: number;
  source_offset: number;
  created_at: number;
  version: number;
}

const seconds = (ms: number): number => Math.floor(ms / 1000);

export function findingRow(finding: Finding, meta: RecordMeta): FindingRow {
  const writtenAtMs = Number(meta.timestamp);
  return {
    finding_id: finding.findingId,
    agent: finding.agent,
    rule: finding.rule,
    symbol: finding.symbol,
    portfolio_id: finding.portfolioId,
    severity: finding.severity,
    window_start: seconds(finding.windowStart),
    window_end: seconds(finding.windowEnd),
    event_time: seconds(finding.eventTime),
    event_time_ms: finding.eventTime,
    evidence: JSON.stringify(finding.evidence),
    source_topic: finding.sourceTopic,
    source_partition: finding.sourcePartition,
    source_offset: finding.sourceOffset,
    created_at: seconds(writtenAtMs),
    version: versionOf(meta),
  };
}

/**
 * The version ReplacingMergeTree keeps the highest of: the record's offset in its partition. Every record of one id
 * is on one partition (findings are keyed by symbol or portfolio, alerts and digests by portfolio, and the id
 * contains that key), so a later record of an id always wins, whatever the clocks say: two records written in the
 * same millisecond (an episode escalating within one batch) would tie on a timestamp and leave the choice to
 * ClickHouse. A record sunk again after a crash has the same offset, hence the identical row.
 */
export function versionOf(meta: RecordMeta): number {
  return Number(meta.offset);
}

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

/** Record type → table: the rows the fleet's sink writes. */
export const fleetMappings: Record<string, RecordMapping> = {
  [FindingType]: mapTo<Finding>('findings', findingRow),
  [AlertType]: mapTo<Alert>('alerts', alertRow),
  [DigestType]: mapTo<Digest>('digests', digestRow),
};
