/**
 * Hourly digests per portfolio, in two steps that are each exactly-once:
 *  1. digest-window: a tumbling hour per portfolio over its findings (event time, closed by stream time or, for
 *     quiet portfolios, by the wall clock) emits a draft with the counts and the most severe findings;
 *  2. digest-writer: summarises each draft through the `digest` service (the LLM's Message Batches API, half the
 *     price, latency not critical) and writes the Digest; rules-only when there is no answer.
 * One digest per portfolio and hour across all instances: the hour's window lives on the portfolio's partition,
 * and the id is derived from portfolio and hour.
 */
import { createHash } from 'node:crypto';
import {
  RULES_ONLY,
  type ProcessorContext,
  type StreamRecord,
  type TopicOf,
  type WindowResult,
  type WindowResultContext,
} from '../runtime/index.ts';
import { severities, severityRank, type Finding, type Severity } from './finding.ts';
import { portfolios } from './portfolio-exposure.ts';
import { rulesOnlyDigest } from './analysis/rules-only.ts';
import type { Digest } from '../schemas/generated/types.ts';

export const DigestType = 'agentstreams.fleet.Digest';
export const DIGEST_SERVICE = 'digest';
const TOP = 5;

/**
 * The hour's findings by id, each as [severity rank, event time, summary]. A finding re-emitted under the same id
 * (an episode that cleared and came back) replaces its earlier version, so the digest counts what a user sees in
 * ClickHouse, where the latest version of each id wins.
 */
export interface DigestAccumulator {
  findings: Record<string, [number, number, string]>;
}

export const digestAggregation = {
  init: (): DigestAccumulator => ({ findings: {} }),
  add(acc: DigestAccumulator, finding: Finding): DigestAccumulator {
    (acc.findings ??= {})[finding.findingId] = [severityRank(finding.severity), finding.eventTime, finding.summary];
    return acc;
  },
};

/** Count, severities and the most severe findings of an hour's accumulator. */
export function digestContent(acc: DigestAccumulator): {
  count: number;
  bySeverity: Record<string, number>;
  top: string[];
} {
  // `?? {}`: an accumulator stored by an older version (counts only) reads as empty rather than failing.
  const entries = Object.values(acc.findings ?? {});
  const bySeverity: Record<string, number> = {};
  for (const [rank] of entries) bySeverity[severities[rank]!] = (bySeverity[severities[rank]!] ?? 0) + 1;
  const top = [...entries].sort((a, b) => b[0] - a[0] || a[1] - b[1] || a[2].localeCompare(b[2])).slice(0, TOP);
  return { count: entries.length, bySeverity, top: top.map(([, , summary]) => summary) };
}

export function digestId(portfolioId: string, hourStart: number): string {
  return createHash('sha256').update(`${portfolioId}\u0000${hourStart}`).digest('hex');
}

export function digestDraft(output: TopicOf<Digest>) {
  return (result: WindowResult<DigestAccumulator> & { final: boolean }, ctx: WindowResultContext): void => {
    const content = digestContent(result.value);
    const draft: Digest = {
      digestId: digestId(ctx.key, result.start),
      portfolioId: ctx.key,
      hourStart: result.start,
      findingCount: content.count,
      alertCount: 0,
      bySeverity: content.bySeverity,
      topFindings: content.top,
      summary: '',
      model: '',
    };
    ctx.forward(output, { key: ctx.key, value: draft, timestamp: result.end });
  };
}

export interface DigestRequest {
  draft: Digest;
  portfolioName: string;
}

export interface DigestAnswer {
  summary: string;
  model: string;
}

export function alertCountOf(bySeverity: Record<string, number>, alertAt: Severity): number {
  return severities
    .filter((s) => severityRank(s) >= severityRank(alertAt))
    .reduce((n, s) => n + (bySeverity[s] ?? 0), 0);
}

export function digestWriter(options: { output: TopicOf<Digest> }) {
  return {
    service: DIGEST_SERVICE,
    request(record: StreamRecord<Digest>, ctx: Pick<ProcessorContext, 'table'>): DigestRequest {
      const draft = record.value;
      return { draft, portfolioName: ctx.table(portfolios).get(draft.portfolioId)?.name ?? draft.portfolioId };
    },
    process(record: StreamRecord<Digest>, ctx: ProcessorContext): void {
      const draft = record.value;
      const portfolio = ctx.table(portfolios).get(draft.portfolioId);
      const alertCount = alertCountOf(draft.bySeverity, portfolio?.alertAt ?? 'high');
      const answer = ctx.answer<DigestAnswer>();
      const digest: Digest = {
        ...draft,
        alertCount,
        summary:
          answer?.summary ??
          rulesOnlyDigest({ ...draft, portfolioName: portfolio?.name ?? draft.portfolioId }, alertCount),
        model: answer?.model ?? RULES_ONLY,
      };
      ctx.forward(options.output, { key: draft.portfolioId, value: digest });
    },
  };
}
