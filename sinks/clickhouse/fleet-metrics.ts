/**
 * The fleet's results as metrics, counted where every one of them passes: the ClickHouse sink. Findings by agent and
 * severity, alerts by severity, and per portfolio the newest hour a digest was written for (what the "no digest for a
 * portfolio in 2 h" alert watches). Counted when a record is mapped to its row, so a record read again after a crash
 * counts again; the gauge is a maximum and does not care.
 */
import type { Alert, Digest, Finding } from '../../schemas/generated/types.ts';
import type { Metrics } from '../../runtime/observability/metrics.ts';
import { fleetMappings } from './fleet-rows.ts';
import type { RecordMapping } from './topic-sink.ts';

export type FleetResultMetrics = Pick<Metrics, 'findings' | 'alerts' | 'digestLastHour'>;

export function observedFleetMappings(metrics: FleetResultMetrics, mappings: Readonly<Record<string, RecordMapping>> = fleetMappings): Record<string, RecordMapping> {
  const newestHour = new Map<string, number>();
  const observe: Record<string, (value: unknown) => void> = {
    'agentstreams.fleet.Finding': (value) => {
      const finding = value as Finding;
      metrics.findings.inc({ agent: finding.agent, severity: finding.severity });
    },
    'agentstreams.fleet.Alert': (value) => metrics.alerts.inc({ severity: (value as Alert).severity }),
    'agentstreams.fleet.Digest': (value) => {
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
