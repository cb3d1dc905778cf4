/**
 * alert-analyst: a portfolio finding at or above the portfolio's alert level becomes an Alert. The analysis is
 * asked of the `analysis` service (the runtime's LLM, with budgets and fallbacks); without an answer the alert is
 * still raised, rules-only, saying why. The severity is the rules' severity: analysis never raises it.
 */
import { createHash } from 'node:crypto';
import type { ProcessorContext, StreamRecord } from '../runtime/topology/processor.ts';
import { severityRank, type Finding } from './finding.ts';
import type { Alert } from '../schemas/generated/types.ts';
import { PORTFOLIOS_TABLE, type Portfolio } from './portfolio-exposure.ts';

export const AlertType = 'agentstreams.fleet.Alert';
export const ANALYSIS_SERVICE = 'analysis';

export interface AnalysisRequest {
  finding: Finding;
  portfolioName: string;
}

export interface Analysis {
  analysis: string;
  recommendedAction: string;
  /** Model id, or `rules-only`. */
  model: string;
  /** Why the analysis is rules-only, when it is. */
  reason?: string;
}

const actions: Record<string, string> = {
  'price-move': 'Review the position against its stop levels; consider trimming or hedging until the move is explained.',
  'volume-spike': 'Check for news or filings behind the volume; watch for a follow-through price move.',
  news: 'Read the coverage and assess materiality for the thesis; confirm with a second source before acting.',
  filings: 'Read the filing items; reassess the position if guidance, leadership or insider activity changed.',
  volatility: 'Resize risk for the higher volatility; check options exposure and stop distances.',
};

/** What the alert says when no model wrote it: built from the rules' own evidence. */
export function rulesOnlyAnalysis(finding: Finding, reason: string): Analysis {
  const evidence = Object.entries(finding.evidence)
    .map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(4)}`)
    .join(', ');
  return {
    analysis: `${finding.summary}. Rule ${finding.agent}/${finding.rule} at ${finding.severity}${evidence ? `; evidence: ${evidence}` : ''}.`,
    recommendedAction: actions[finding.agent] ?? 'Review the finding and the position.',
    model: 'rules-only',
    reason,
  };
}

function alerting(finding: Finding, portfolio: Portfolio | undefined): portfolio is Portfolio {
  return portfolio !== undefined && severityRank(finding.severity) >= severityRank(portfolio.alertAt);
}

export function alertAnalyst(options: { output: string }) {
  return {
    service: ANALYSIS_SERVICE,
    request(record: StreamRecord, ctx: Pick<ProcessorContext, 'table'>): AnalysisRequest | undefined {
      const finding = record.value as Finding;
      const portfolio = ctx.table<Portfolio>(PORTFOLIOS_TABLE).get(finding.portfolioId);
      return alerting(finding, portfolio) ? { finding, portfolioName: portfolio.name } : undefined;
    },
    process(record: StreamRecord, ctx: ProcessorContext): void {
      const finding = record.value as Finding;
      const portfolio = ctx.table<Portfolio>(PORTFOLIOS_TABLE).get(finding.portfolioId);
      if (!alerting(finding, portfolio)) return;
      const answer = ctx.answer<Analysis>() ?? rulesOnlyAnalysis(finding, 'the analysis service gave no answer');
      const alert: Alert = {
        alertId: createHash('sha256').update(finding.findingId).digest('hex'),
        findingIds: [finding.findingId],
        portfolioId: finding.portfolioId,
        symbol: finding.symbol,
        severity: finding.severity,
        windowStart: finding.windowStart,
        eventTime: finding.eventTime,
        analysis: answer.analysis,
        recommendedAction: answer.recommendedAction,
        model: answer.model,
        reason: answer.reason ?? '',
      };
      ctx.forward({ topic: options.output, key: finding.portfolioId, recordType: AlertType, value: alert });
    },
  };
}
