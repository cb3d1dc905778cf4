/**
 * What the fleet says when no model wrote the text: built from the rules' own evidence. One text for every path —
 * the analyst's service falling back (no key, budget, circuit, invalid reply) and a processor that got no answer.
 */
import { RULES_ONLY } from '../../runtime/index.ts';
import { severities, type Severity } from '../finding.ts';

/** A finding as the analysis sees it: a `Finding`, or the fields of one (evidence may quote text). */
export interface AnalysedFinding {
  /** Agent type that raised the finding (price-move, news, …): budgets and the audit are kept per agent type. */
  agent: string;
  rule: string;
  symbol: string;
  /** The rules' severity: the ceiling for anything the model says. */
  severity: Severity;
  evidence: Readonly<Record<string, number | string>>;
  /** A one-line summary written by the rule (it may quote third-party text). */
  summary?: string;
}

/** The analysis of a finding, by a model or by the rules. */
export interface Analysis {
  analysis: string;
  recommendedAction: string;
  /** Model id, or `rules-only`. */
  model: string;
  /** Why the analysis is rules-only, when it is. */
  reason?: string;
  /** The severity the analysis settles on: never above the finding's. */
  severity?: Severity;
  /** The model's own confidence in [0, 1]; absent for rules-only answers. */
  confidence?: number;
  /** The severity the model asked for, before the clamp; absent for rules-only answers. */
  modelSeverity?: Severity;
  /**
   * The model contradicted the rules: it asked for a higher severity than the rules allow. Its text is kept, but
   * flagged, so a reader weighs it against the rules' own (the alert analyst flags more, e.g. trade advice on news).
   */
  modelDisagreed?: boolean;
}

/** The rules-only recommended action per agent type (also quoted in the rule book). */
export const recommendedActions: Readonly<Record<string, string>> = {
  'price-move':
    'Review the position against its stop levels; consider trimming or hedging until the move is explained.',
  'volume-spike': 'Check for news or filings behind the volume; watch for a follow-through price move.',
  news: 'Read the coverage and assess materiality for the thesis; confirm with a second source before acting.',
  filings: 'Read the filing items; reassess the position if guidance, leadership or insider activity changed.',
  volatility: 'Resize risk for the higher volatility; check options exposure and stop distances.',
};

function formatEvidence(evidence: Readonly<Record<string, number | string>>): string {
  return Object.entries(evidence)
    .map(([k, v]) => `${k} ${typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(4) : v}`)
    .join(', ');
}

/** The analysis when no model wrote one, saying why (`reason`). */
export function rulesOnlyAnalysis(finding: AnalysedFinding, reason: string): Analysis {
  const evidence = formatEvidence(finding.evidence);
  const headline = finding.summary || `${finding.agent}/${finding.rule} on ${finding.symbol}`;
  return {
    analysis: `${headline}. Rule ${finding.agent}/${finding.rule} at ${finding.severity}${evidence ? `; evidence: ${evidence}` : ''}.`,
    recommendedAction: recommendedActions[finding.agent] ?? 'Review the finding and the position.',
    severity: finding.severity,
    model: RULES_ONLY,
    reason,
    modelDisagreed: false,
  };
}

/** One period of one portfolio's findings, as a digest summarises it. */
export interface DigestContent {
  portfolioName: string;
  hourStart: number;
  findingCount: number;
  bySeverity: Readonly<Partial<Record<Severity, number>>> | Readonly<Record<string, number>>;
  /** Summaries of the most severe findings. */
  topFindings: readonly string[];
}

/** The digest text when no model wrote one; `alertCount` (findings at or above the portfolio's alert level) when known. */
export function rulesOnlyDigest(content: DigestContent, alertCount?: number): string {
  const bySeverity = content.bySeverity as Readonly<Record<string, number | undefined>>;
  const counts = [...severities]
    .reverse()
    .filter((s) => (bySeverity[s] ?? 0) > 0)
    .map((s) => `${bySeverity[s]} ${s}`)
    .join(', ');
  const from = new Date(content.hourStart).toISOString().slice(0, 16).replace('T', ' ');
  const alerting = alertCount === undefined ? '' : `, ${alertCount} alerting`;
  const top = content.topFindings.length > 0 ? ` Most severe: ${content.topFindings.join('; ')}.` : '';
  return `${content.portfolioName}, from ${from} UTC: ${content.findingCount} findings${counts ? ` (${counts})` : ''}${alerting}.${top}`;
}
