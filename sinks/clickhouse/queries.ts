/**
 * Named, parameterised queries over findings, alerts, digests and the LLM audit: the read API users get.
 * Each reads through FINAL so that rows written twice (after a crash or a retried insert) count once.
 * Parameters use ClickHouse's `{name:Type}` syntax, rendered by `renderQuery` (see params.ts).
 */
import { renderQuery } from './params.ts';

export interface NamedQuery {
  description: string;
  sql: string;
  /** Example parameters: documentation, and what the portability test runs each query with. */
  example: Record<string, unknown>;
}

export const namedQueries = {
  findingsByPortfolio: {
    description: 'Findings for one portfolio in a time range at or above a severity, newest first',
    sql: `SELECT finding_id, agent, rule, symbol, severity, window_start, window_end, evidence
FROM findings FINAL
WHERE portfolio_id = {portfolio:String}
  AND window_start >= {from:DateTime} AND window_start < {to:DateTime}
  AND severity >= {minSeverity:String}
ORDER BY window_start DESC, finding_id
LIMIT {limit:UInt32}`,
    example: { portfolio: 'growth', from: 1767225600, to: 1767232800, minSeverity: 'medium', limit: 100 },
  },
  findingsBySymbol: {
    description: 'Findings for one symbol in a time range, newest first',
    sql: `SELECT finding_id, agent, rule, portfolio_id, severity, window_start, evidence
FROM findings FINAL
WHERE symbol = {symbol:String} AND window_start >= {from:DateTime} AND window_start < {to:DateTime}
ORDER BY window_start DESC, finding_id
LIMIT {limit:UInt32}`,
    example: { symbol: 'ACME', from: 1767225600, to: 1767232800, limit: 100 },
  },
  severityCounts: {
    description: 'Finding counts per agent and severity for a portfolio and time range',
    sql: `SELECT agent, severity, count() AS findings
FROM findings FINAL
WHERE portfolio_id = {portfolio:String} AND window_start >= {from:DateTime} AND window_start < {to:DateTime}
GROUP BY agent, severity
ORDER BY agent, severity`,
    example: { portfolio: 'growth', from: 1767225600, to: 1767232800 },
  },
  alertsByPortfolio: {
    description: 'Alerts for one portfolio in a time range, newest first',
    sql: `SELECT alert_id, symbol, severity, window_start, analysis, recommended_action, model
FROM alerts FINAL
WHERE portfolio_id = {portfolio:String} AND window_start >= {from:DateTime} AND window_start < {to:DateTime}
ORDER BY window_start DESC, alert_id
LIMIT {limit:UInt32}`,
    example: { portfolio: 'growth', from: 1767225600, to: 1767232800, limit: 100 },
  },
  recentFindings: {
    description: 'Findings of every portfolio (or market-wide, portfolio "") since a time at or above a severity',
    sql: `SELECT portfolio_id, agent, rule, symbol, severity, window_start, evidence
FROM findings FINAL
WHERE window_start >= {from:DateTime} AND severity >= {minSeverity:String}
ORDER BY window_start DESC, finding_id
LIMIT {limit:UInt32}`,
    example: { from: 1767225600, minSeverity: 'medium', limit: 100 },
  },
  recentDigests: {
    description: 'The latest digests of every portfolio since a time',
    sql: `SELECT portfolio_id, hour_start, finding_count, alert_count, model, summary
FROM digests FINAL
WHERE hour_start >= {from:DateTime}
ORDER BY hour_start DESC, portfolio_id
LIMIT {limit:UInt32}`,
    example: { from: 1767225600, limit: 50 },
  },
  digestsByPortfolio: {
    description: 'Hourly digests for a portfolio in a time range',
    sql: `SELECT digest_id, hour_start, summary, finding_count, alert_count, model
FROM digests FINAL
WHERE portfolio_id = {portfolio:String} AND hour_start >= {from:DateTime} AND hour_start < {to:DateTime}
ORDER BY hour_start`,
    example: { portfolio: 'growth', from: 1767225600, to: 1767232800 },
  },
  llmSpendByModel: {
    description: 'LLM calls, tokens and estimated cost per agent and model since a time',
    sql: `SELECT agent, model, count() AS calls, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
  sum(cache_read_tokens) AS cache_read_tokens, sum(cost_usd) AS cost_usd
FROM llm_calls FINAL
WHERE created_at >= {from:DateTime}
GROUP BY agent, model
ORDER BY cost_usd DESC`,
    example: { from: 1767225600 },
  },
} as const satisfies Record<string, NamedQuery>;

export type NamedQueryName = keyof typeof namedQueries;

export function namedQuerySql(name: NamedQueryName, params: Record<string, unknown>): string {
  return renderQuery(namedQueries[name].sql, params);
}
