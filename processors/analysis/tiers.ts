/**
 * Model tiering: a cheap model triages; the strong one is kept for the findings that matter most, because it costs
 * about three times as much per token. The tier follows the rules' severity, so untrusted text cannot buy the
 * expensive model.
 */
import { severityRank, type Severity } from '../finding.ts';

export interface ModelTiers {
  triage: string;
  strong: string;
}

export const defaultModelTiers: Readonly<ModelTiers> = Object.freeze({
  triage: 'claude-haiku-5-5',
  strong: 'claude-sonnet-5-5',
});

/** Findings at or above `strongAt` (default critical) go to the strong model, everything else to triage. */
export function modelFor(severity: Severity, tiers: ModelTiers, strongAt: Severity = 'critical'): string {
  return severityRank(severity) >= severityRank(strongAt) ? tiers.strong : tiers.triage;
}
