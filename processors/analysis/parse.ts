/**
 * The fleet's reply formats, checked strictly before any of a reply reaches an Alert or a Digest: exact keys, types,
 * bounded lengths, the severity scale, confidence in [0, 1].
 */
import { exactKeys, parseJsonObject, textProblem, type Parsed } from '../../runtime/index.ts';
import type { Severity } from '../finding.ts';
import { isSeverity } from './severity.ts';

export interface AnalysisOutput {
  summary: string;
  recommended_action: string;
  severity: Severity;
  confidence: number;
}

export interface DigestOutput {
  summary: string;
}

const MAX_SUMMARY = 2_000;
const MAX_ACTION = 1_000;

export function parseAnalysis(reply: string): Parsed<AnalysisOutput> {
  const parsed = parseJsonObject(reply);
  if (!parsed.ok) return parsed;
  const v = parsed.value;
  const problem =
    exactKeys(v, ['summary', 'recommended_action', 'severity', 'confidence']) ??
    textProblem(v.summary, 'summary', MAX_SUMMARY) ??
    textProblem(v.recommended_action, 'recommended_action', MAX_ACTION) ??
    (isSeverity(v.severity)
      ? undefined
      : `severity must be one of info, low, medium, high, critical (got ${JSON.stringify(v.severity)})`) ??
    (typeof v.confidence === 'number' && Number.isFinite(v.confidence) && v.confidence >= 0 && v.confidence <= 1
      ? undefined
      : `confidence must be a number from 0 to 1 (got ${JSON.stringify(v.confidence)})`);
  if (problem !== undefined) return { ok: false, problem };
  return {
    ok: true,
    value: {
      summary: (v.summary as string).trim(),
      recommended_action: (v.recommended_action as string).trim(),
      severity: v.severity as Severity,
      confidence: v.confidence as number,
    },
  };
}

export function parseDigest(reply: string): Parsed<DigestOutput> {
  const parsed = parseJsonObject(reply);
  if (!parsed.ok) return parsed;
  const problem = exactKeys(parsed.value, ['summary']) ?? textProblem(parsed.value.summary, 'summary', MAX_SUMMARY);
  if (problem !== undefined) return { ok: false, problem };
  return { ok: true, value: { summary: (parsed.value.summary as string).trim() } };
}
