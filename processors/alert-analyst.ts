/**
 * alert-analyst: a portfolio finding at or above the portfolio's alert level becomes an Alert. The analysis is
 * asked of the `analysis` service (the runtime's LLM, with budgets and fallbacks); without an answer the alert is
 * still raised, rules-only, saying why. The severity is the rules' severity: analysis never raises it.
 *
 * The model's text is kept as written, but an answer that contradicts the rules is flagged (`modelDisagreed`) and
 * the rules' own text always rides beside it (`rulesAnalysis`): a reader sees the disagreement instead of a hostile
 * or fooled model's text passing for the rules' view.
 */
import { createHash } from 'node:crypto';
import { RULES_ONLY, type ProcessorContext, type StreamRecord, type TopicOf } from '../runtime/index.ts';
import { severities, severityRank, type Finding, type Severity } from './finding.ts';
import type { Alert } from '../schemas/generated/types.ts';
import { portfolios, type Portfolio } from './portfolio-exposure.ts';
import { rulesOnlyAnalysis, type Analysis } from './analysis/rules-only.ts';

export { rulesOnlyAnalysis, type Analysis };

export const AlertType = 'agentstreams.fleet.Alert';
export const ANALYSIS_SERVICE = 'analysis';

export interface AnalysisRequest {
  finding: Finding;
  portfolioName: string;
}

/** Agents whose findings rest on third-party text (stories, filings): no trade may be recommended on them alone. */
const thirdPartyAgents = new Set(['news', 'filings']);

const severityWords = severities.join('|');
// "severity critical", "severity should be raised to high", "critical-severity", "high priority", "escalate to critical".
const severityClaims = [
  new RegExp(`\\bseverity\\b[^.;\\n]{0,40}?\\b(${severityWords})\\b`, 'gi'),
  new RegExp(`\\b(${severityWords})[- ](?:severity|priority|alert)\\b`, 'gi'),
  new RegExp(`\\b(?:escalate|raise|upgrade)\\w*\\b[^.;\\n]{0,30}?\\b(${severityWords})\\b`, 'gi'),
];
const tradeAdvice =
  /\b(buy|buying|sell|selling|short|shorting|go long|liquidat\w*|dump|dumping|unload\w*|exit (?:the |all |your )?positions?|close (?:out )?(?:the |all |your )?positions?)\b(?!-)/gi;
const negation = /\b(not|never|no|don't|do not|avoid|without|before)\b[^.;\n]{0,30}$/i;

/**
 * How a model's answer contradicts the rules, if it does: a higher severity than the rules allow (asked for in
 * the reply's severity field, or claimed in its text), or a trade recommended on a finding that rests on
 * third-party text, which the rule book forbids. Negated advice ("do not sell before…") is not a contradiction.
 */
export function contradictions(finding: Finding, answer: Analysis): string[] {
  if (answer.model === RULES_ONLY) return [];
  const found: string[] = [];
  const ceiling = severityRank(finding.severity);
  if (answer.modelDisagreed || (answer.modelSeverity !== undefined && severityRank(answer.modelSeverity) > ceiling)) {
    found.push(`asked for severity ${answer.modelSeverity ?? 'above the rules'}; the rules allow ${finding.severity}`);
  }
  const text = `${answer.analysis}\n${answer.recommendedAction}`;
  for (const claim of severityClaims) {
    for (const m of text.matchAll(claim)) {
      const word = m[1]!.toLowerCase() as Severity;
      if (severityRank(word) > ceiling)
        found.push(`claims severity ${word} in its text; the rules allow ${finding.severity}`);
    }
  }
  if (thirdPartyAgents.has(finding.agent)) {
    for (const m of text.matchAll(tradeAdvice)) {
      if (!negation.test(text.slice(Math.max(0, m.index - 40), m.index)))
        found.push(`recommends a trade ("${m[0]}") on third-party text`);
    }
  }
  return [...new Set(found)];
}

/** An alert's id follows from the finding it serves: the same finding always makes the same alert (idempotent rows). */
export function alertIdOf(findingId: string): string {
  return createHash('sha256').update(findingId).digest('hex');
}

function alerting(finding: Finding, portfolio: Portfolio | undefined): portfolio is Portfolio {
  return portfolio !== undefined && severityRank(finding.severity) >= severityRank(portfolio.alertAt);
}

export function alertAnalyst(options: { output: TopicOf<Alert> }) {
  return {
    service: ANALYSIS_SERVICE,
    request(record: StreamRecord<Finding>, ctx: Pick<ProcessorContext, 'table'>): AnalysisRequest | undefined {
      const finding = record.value;
      const portfolio = ctx.table(portfolios).get(finding.portfolioId);
      return alerting(finding, portfolio) ? { finding, portfolioName: portfolio.name } : undefined;
    },
    process(record: StreamRecord<Finding>, ctx: ProcessorContext): void {
      const finding = record.value;
      const portfolio = ctx.table(portfolios).get(finding.portfolioId);
      if (!alerting(finding, portfolio)) return;
      const answer = ctx.answer<Analysis>() ?? rulesOnlyAnalysis(finding, 'the analysis service gave no answer');
      const rules = rulesOnlyAnalysis(finding, '');
      const alert: Alert = {
        alertId: alertIdOf(finding.findingId),
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
        modelDisagreed: contradictions(finding, answer).length > 0,
        rulesAnalysis: rules.analysis,
      };
      ctx.forward(options.output, { key: finding.portfolioId, value: alert });
    },
  };
}
