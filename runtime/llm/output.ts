/**
 * Strict validation of what the model replies. The reply must be exactly the JSON object we asked for — right keys,
 * right types, bounded lengths, no extra keys — before any of it reaches an Alert or a Digest. The only leniency is
 * a surrounding markdown code fence, which says nothing about the content and would otherwise cost a second call.
 */
import { isSeverity, type Severity } from './finding.ts';

export type Parsed<T> = { ok: true; value: T } | { ok: false; problem: string };

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

function parseObject(text: string): Parsed<Record<string, unknown>> {
  const trimmed = text.trim();
  const fenced = /^```(?:json)?[ \t]*\n([\s\S]*?)\n?```$/.exec(trimmed);
  const body = fenced?.[1] ?? trimmed;
  if (!body.startsWith('{')) return { ok: false, problem: 'the reply is not a JSON object (it does not start with "{")' };
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch (error) {
    return { ok: false, problem: `the reply is not valid JSON (${error instanceof Error ? error.message : String(error)})` };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { ok: false, problem: 'the reply is not a JSON object' };
  return { ok: true, value: value as Record<string, unknown> };
}

function exactKeys(value: Record<string, unknown>, keys: readonly string[]): string | undefined {
  const missing = keys.filter((k) => !(k in value));
  const extra = Object.keys(value).filter((k) => !keys.includes(k));
  if (missing.length > 0) return `missing key(s) ${missing.join(', ')}`;
  if (extra.length > 0) return `unexpected key(s) ${extra.join(', ')}`;
  return undefined;
}

function text(value: unknown, name: string, max: number): string | undefined {
  if (typeof value !== 'string') return `${name} must be a string`;
  if (value.trim() === '') return `${name} must not be empty`;
  if (value.length > max) return `${name} is longer than ${max} characters`;
  return undefined;
}

export function parseAnalysis(reply: string): Parsed<AnalysisOutput> {
  const parsed = parseObject(reply);
  if (!parsed.ok) return parsed;
  const v = parsed.value;
  const problem =
    exactKeys(v, ['summary', 'recommended_action', 'severity', 'confidence']) ??
    text(v.summary, 'summary', MAX_SUMMARY) ??
    text(v.recommended_action, 'recommended_action', MAX_ACTION) ??
    (isSeverity(v.severity) ? undefined : `severity must be one of info, low, medium, high, critical (got ${JSON.stringify(v.severity)})`) ??
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
  const parsed = parseObject(reply);
  if (!parsed.ok) return parsed;
  const problem = exactKeys(parsed.value, ['summary']) ?? text(parsed.value.summary, 'summary', MAX_SUMMARY);
  if (problem !== undefined) return { ok: false, problem };
  return { ok: true, value: { summary: (parsed.value.summary as string).trim() } };
}
