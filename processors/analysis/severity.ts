/**
 * The rules' severity is the ceiling of anything a model says about a finding: these are the checks that hold it,
 * on the fleet's one severity scale (processors/finding.ts, from the Avro schema).
 */
import { severities, severityRank, type Severity } from '../finding.ts';

export function isSeverity(value: unknown): value is Severity {
  return typeof value === 'string' && (severities as readonly string[]).includes(value);
}

/** The lower of the two: a model's suggestion may lower the rules' severity but never raise it. */
export function clampSeverity(suggested: Severity, rules: Severity): Severity {
  return severityRank(suggested) <= severityRank(rules) ? suggested : rules;
}

/** True when a model asked for more than the rules allow: the clamp hides it from the severity, the flag does not. */
export function exceedsRules(modelSeverity: Severity, rules: Severity): boolean {
  return severityRank(modelSeverity) > severityRank(rules);
}
