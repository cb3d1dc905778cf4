/**
 * What the LLM service is asked about, and the answers it gives. The runtime maps processor records onto these
 * minimal shapes, so this folder depends on no processor and the prompt sees only what is listed here.
 */

export const severities = ['info', 'low', 'medium', 'high', 'critical'] as const;
export type Severity = (typeof severities)[number];

export function isSeverity(value: unknown): value is Severity {
  return typeof value === 'string' && (severities as readonly string[]).includes(value);
}

export function severityRank(severity: Severity): number {
  return severities.indexOf(severity);
}

/** The lower of the two: a model's suggestion may lower the rules' severity but never raise it. */
export function clampSeverity(suggested: Severity, rules: Severity): Severity {
  return severityRank(suggested) <= severityRank(rules) ? suggested : rules;
}

export interface LlmFinding {
  id: string;
  /** Agent type that raised the finding (price-move, news, …): budgets and the audit are kept per agent type. */
  agent: string;
  rule: string;
  symbol: string;
  /** The rules' severity: the ceiling for anything the model says. */
  severity: Severity;
  evidence: Record<string, number | string>;
  /** A one-line summary written by the rule (trusted: it is our own text). */
  summary?: string;
  /** Third-party text (news headline and body): shown to the model as data, never as instructions. */
  untrustedText?: string;
}

export interface FindingAnalysis {
  analysis: string;
  recommendedAction: string;
  /** Never above the finding's severity. */
  severity: Severity;
  /** The model's own confidence in [0, 1]; absent for rules-only answers. */
  confidence?: number;
  /** Model id, or `rules-only`. */
  model: string;
  /** Why the answer is rules-only, when it is. */
  reason?: string;
  /** The severity the model asked for, before the clamp; absent for rules-only answers. */
  modelSeverity?: Severity;
  /**
   * The model contradicted the rules: it asked for a higher severity than the rules allow. Its text is kept, but
   * flagged, so a reader weighs it against the rules' own (the caller may flag more, e.g. trade advice on news).
   */
  modelDisagreed: boolean;
}

/** True when a model asked for more than the rules allow: the clamp hides it from the severity, the flag does not. */
export function exceedsRules(modelSeverity: Severity, rules: Severity): boolean {
  return severityRank(modelSeverity) > severityRank(rules);
}

export const RULES_ONLY = 'rules-only';

function formatEvidence(evidence: Record<string, number | string>): string {
  return Object.entries(evidence)
    .map(([k, v]) => `${k} ${typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(4) : v}`)
    .join(', ');
}

/** The answer when no model wrote one: built from the rule's own evidence, saying why. */
export function rulesOnlyAnalysis(finding: LlmFinding, reason: string): FindingAnalysis {
  const evidence = formatEvidence(finding.evidence);
  const headline = finding.summary ?? `${finding.agent}/${finding.rule} on ${finding.symbol}`;
  return {
    analysis: `${headline}. Rule ${finding.agent}/${finding.rule} at ${finding.severity}${evidence ? `; evidence: ${evidence}` : ''}.`,
    recommendedAction: 'Review the finding against the position; no model analysis is available for it.',
    severity: finding.severity,
    model: RULES_ONLY,
    reason,
    modelDisagreed: false,
  };
}

/** One hour of one portfolio's findings, to be summarised through the Message Batches API. */
export interface DigestRequest {
  /** Unique within one `summarizeDigests` call; 1–64 of [A-Za-z0-9_-] (the API's custom_id). */
  id: string;
  /** Budget and audit key; default `digest`. */
  agent?: string;
  portfolioName: string;
  hourStart: number;
  findingCount: number;
  bySeverity: Partial<Record<Severity, number>>;
  /** Summaries of the most severe findings; may quote third-party text, so shown to the model as data. */
  topFindings: string[];
}

export interface DigestSummary {
  id: string;
  summary: string;
  /** Model id, or `rules-only`. */
  model: string;
  reason?: string;
}

export function rulesOnlyDigest(request: DigestRequest, reason: string): DigestSummary {
  const counts = [...severities]
    .reverse()
    .filter((s) => (request.bySeverity[s] ?? 0) > 0)
    .map((s) => `${request.bySeverity[s]} ${s}`)
    .join(', ');
  const hour = new Date(request.hourStart).toISOString().slice(0, 13).replace('T', ' ');
  const top = request.topFindings.length > 0 ? ` Most severe: ${request.topFindings.join('; ')}.` : '';
  return {
    id: request.id,
    summary: `${request.portfolioName}, hour from ${hour}:00 UTC: ${request.findingCount} findings${counts ? ` (${counts})` : ''}.${top}`,
    model: RULES_ONLY,
    reason,
  };
}
