/**
 * Building findings: deterministic ids (a replay rewrites the same finding, and ClickHouse keeps one row per
 * id) and the severity scale shared by every agent.
 */
import { createHash } from 'node:crypto';
import type { StreamRecord, TopicOf } from '../runtime/index.ts';

import type { Finding, Severity } from '../schemas/generated/types.ts';

export type { Finding, Severity };

export const severities = ['info', 'low', 'medium', 'high', 'critical'] as const satisfies readonly Severity[];

export const FindingType = 'agentstreams.fleet.Finding';

/** A topic of findings (the signal agents' output, portfolio-exposure's input and output). */
export type FindingTopic = TopicOf<Finding>;

export function findingId(
  agent: string,
  rule: string,
  symbol: string,
  portfolioId: string,
  windowStart: number,
): string {
  return createHash('sha256')
    .update(`${agent}\u0000${rule}\u0000${symbol}\u0000${portfolioId}\u0000${windowStart}`)
    .digest('hex');
}

export function severityRank(severity: Severity): number {
  return severities.indexOf(severity);
}

export function finding(
  fields: Omit<Finding, 'findingId' | 'sourceTopic' | 'sourcePartition' | 'sourceOffset' | 'portfolioId'> & {
    portfolioId?: string;
  },
  source: StreamRecord,
): Finding {
  const portfolioId = fields.portfolioId ?? '';
  return {
    ...fields,
    portfolioId,
    findingId: findingId(fields.agent, fields.rule, fields.symbol, portfolioId, fields.windowStart),
    sourceTopic: source.topic,
    sourcePartition: source.partition,
    sourceOffset: Number(source.offset),
  };
}
