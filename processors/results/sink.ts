/**
 * The market fleet's ClickHouse sink as its topology declares it (`sink.clickhouse`): its rows (./rows.ts), counted
 * into metrics and, for alerts, logged.
 *
 * The fleet's results as metrics, counted where every one of them passes: the ClickHouse sink. Findings by agent and
 * severity, alerts by severity, and per portfolio the newest hour a digest was written for (what the "no digest for a
 * portfolio in 2 h" alert watches). Counted when a record is mapped to its row, so a record read again after a crash
 * counts again; the gauge is a maximum and does not care.
 */
import type { ClickHouseSinkDeclaration, EventLog, Metrics, RecordMapping } from '../../runtime/index.ts';
import {
  AlertType,
  DigestType,
  FindingType,
  type Alert,
  type Digest,
  type Finding,
} from '../../schemas/generated/types.ts';
import { fleetMappings } from './rows.ts';

/** The `sink.clickhouse` declaration of a market fleet: these topics, the fleet's mappings, counted and logged. */
export function fleetClickHouseSink(topics: readonly string[]): ClickHouseSinkDeclaration {
  return { topics, mappings: ({ metrics, log }) => loggedAlerts(observedFleetMappings(metrics), log) };
}

/**
 * One `alert.sunk` line per alert the sink writes (alerts are few: each costs an LLM call), with its id, findings
 * and source offset, so an alert in ClickHouse can be found in the logs and, through its trace, back to its input.
 */
export function loggedAlerts(
  mappings: Readonly<Record<string, RecordMapping>>,
  log: EventLog,
): Record<string, RecordMapping> {
  const alerts = mappings[AlertType];
  if (!alerts) return { ...mappings };
  return {
    ...mappings,
    [AlertType]: {
      table: alerts.table,
      toRows(value, meta) {
        const rows = alerts.toRows(value, meta);
        const alert = value as Alert;
        log('alert.sunk', {
          alertId: alert.alertId,
          findingIds: alert.findingIds,
          severity: alert.severity,
          table: alerts.table,
          topic: meta.topic,
          partition: meta.partition,
          offset: meta.offset,
        });
        return rows;
      },
    } satisfies RecordMapping,
  };
}

export type FleetResultMetrics = Pick<Metrics, 'findings' | 'alerts' | 'digestLastHour'>;

export function observedFleetMappings(
  metrics: FleetResultMetrics,
  mappings: Readonly<Record<string, RecordMapping>> = fleetMappings,
): Record<string, RecordMapping> {
  const newestHour = new Map<string, number>();
  const observe: Record<string, (value: unknown) => void> = {
    [FindingType]: (value) => {
      const finding = value as Finding;
      metrics.findings.inc({ agent: finding.agent, severity: finding.severity });
    },
    [AlertType]: (value) => metrics.alerts.inc({ severity: (value as Alert).severity }),
    [DigestType]: (value) => {
      const { portfolioId, hourStart } = value as Digest;
      // An amended digest for an older hour must not move the gauge back.
      if (hourStart <= (newestHour.get(portfolioId) ?? Number.NEGATIVE_INFINITY)) return;
      newestHour.set(portfolioId, hourStart);
      metrics.digestLastHour.set({ portfolio: portfolioId }, hourStart / 1000);
    },
  };
  return Object.fromEntries(
    Object.entries(mappings).map(([recordType, mapping]) => {
      const seen = observe[recordType];
      if (!seen) return [recordType, mapping];
      return [
        recordType,
        {
          table: mapping.table,
          toRows(value, meta) {
            const rows = mapping.toRows(value, meta);
            seen(value);
            return rows;
          },
        } satisfies RecordMapping,
      ];
    }),
  );
}
