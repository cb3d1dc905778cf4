/** Findings-shaped rows for the sink tests and the bench: deterministic ids, every column of `findings`. */
import { createHash } from 'node:crypto';
import type { FindingRow } from '../../../processors/results/rows.ts';
import { mapColumns } from '../../../sinks/clickhouse/transcode.ts';

/** 2026-01-01T00:00:00Z in epoch seconds. */
export const BASE_SECONDS = 1_767_225_600;
export const PORTFOLIOS = ['growth', 'income', ''] as const;
export const AGENTS = ['price-move', 'volume-spike', 'volatility'] as const;
export const SEVERITIES = ['info', 'low', 'medium', 'high', 'critical'] as const;

export function findingId(
  agent: string,
  rule: string,
  symbol: string,
  portfolioId: string,
  windowStartMs: number,
): string {
  return createHash('sha256').update(`${agent}|${rule}|${symbol}|${portfolioId}|${windowStartMs}`).digest('hex');
}

/** Row `i` of a findings series; window starts are 30 s apart, so ids are unique per `i`. */
export function findingRowAt(i: number, version = 1): FindingRow {
  const agent = AGENTS[i % AGENTS.length]!;
  const rule = `rule-${i % 7}`;
  const symbol = `S${i % 40}`;
  const portfolio = PORTFOLIOS[i % PORTFOLIOS.length]!;
  const windowStart = BASE_SECONDS + i * 30;
  return {
    finding_id: findingId(agent, rule, symbol, portfolio, windowStart * 1000),
    agent,
    rule,
    symbol,
    portfolio_id: portfolio,
    severity: SEVERITIES[(i * 7) % SEVERITIES.length]!,
    window_start: windowStart,
    window_end: windowStart + 60,
    event_time: windowStart + 59,
    event_time_ms: (windowStart + 59) * 1000 + (i % 1000),
    evidence: JSON.stringify({ return: -0.01 * (i % 9), zScore: (i % 50) / 10 }),
    source_topic: 'signals.price',
    source_partition: i % 6,
    source_offset: i,
    created_at: BASE_SECONDS + 8 * 86_400,
    version,
  };
}

export function findingRows(count: number, start = 0, version = 1): FindingRow[] {
  return Array.from({ length: count }, (_, k) => findingRowAt(start + k, version));
}

/** `findingRow` (processors/results/rows.ts) declared column by column (transcode.test.ts checks they agree). */
export const findingColumns = mapColumns('findings', {
  finding_id: { field: 'findingId' },
  agent: { field: 'agent' },
  rule: { field: 'rule' },
  symbol: { field: 'symbol' },
  portfolio_id: { field: 'portfolioId' },
  severity: { field: 'severity' },
  window_start: { field: 'windowStart', as: 'seconds' },
  window_end: { field: 'windowEnd', as: 'seconds' },
  event_time: { field: 'eventTime', as: 'seconds' },
  event_time_ms: { field: 'eventTime' },
  evidence: { field: 'evidence', as: 'json' },
  source_topic: { field: 'sourceTopic' },
  source_partition: { field: 'sourcePartition' },
  source_offset: { field: 'sourceOffset' },
  created_at: { meta: 'timestamp', as: 'seconds' },
  version: { meta: 'offset' },
});
