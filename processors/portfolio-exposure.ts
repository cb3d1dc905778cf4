/**
 * portfolio-exposure: joins each market-wide finding with every portfolio holding the symbol, and emits one
 * portfolio finding per holder, keyed by portfolio. A holding heavier than the portfolio's `raiseAtWeight` raises
 * the severity one level (never past critical); evidence gains the weight and, for price moves, the impact.
 */
import type { ProcessorContext, StreamRecord } from '../runtime/topology/processor.ts';
import type { Portfolio } from '../schemas/generated/types.ts';
import { findingId, FindingType, severities, severityRank, type Finding } from './finding.ts';

export type { Holding, Portfolio } from '../schemas/generated/types.ts';

export const PORTFOLIOS_TABLE = 'portfolios';

export function portfolioExposure(options: { output: string }) {
  return (record: StreamRecord, ctx: ProcessorContext): void => {
    const market = record.value as Finding;
    if (market.portfolioId !== '') return; // already a portfolio finding
    for (const portfolio of ctx.table<Portfolio>(PORTFOLIOS_TABLE).values()) {
      const holding = portfolio.holdings.find((h) => h.symbol === market.symbol);
      if (!holding || holding.weight <= 0) continue;
      const raised = holding.weight >= portfolio.raiseAtWeight;
      const severity = severities[Math.min(severities.length - 1, severityRank(market.severity) + (raised ? 1 : 0))]!;
      const evidence: Record<string, number> = { ...market.evidence, weight: holding.weight };
      if (market.evidence.return !== undefined) evidence.impact = holding.weight * market.evidence.return;
      const value: Finding = {
        ...market,
        portfolioId: portfolio.portfolioId,
        severity,
        evidence,
        summary: `${market.summary} (${(holding.weight * 100).toFixed(1)}% of ${portfolio.name}${raised ? ', raised for exposure' : ''})`,
        findingId: findingId(market.agent, market.rule, market.symbol, portfolio.portfolioId, market.windowStart),
      };
      ctx.forward({ topic: options.output, key: portfolio.portfolioId, recordType: FindingType, value });
    }
  };
}
