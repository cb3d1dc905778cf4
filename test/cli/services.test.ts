/**
 * API keys scoped per agent type: the members' LLM services (cli/services.ts) call the alert analyst with
 * AS_ANTHROPIC_API_KEY_ANALYST and the digest agent with AS_ANTHROPIC_API_KEY_DIGEST, each falling back to
 * ANTHROPIC_API_KEY. The Anthropic stand-in records the x-api-key header of every request.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fleetServices } from '../../cli/services.ts';
import type { AnalysisRequest } from '../../processors/alert-analyst.ts';
import type { DigestRequest } from '../../processors/digest.ts';
import type { Config } from '../../runtime/config/index.ts';
import { migrateDatabase } from '../../sinks/clickhouse/schema.ts';
import { openClickHouse } from '../../sinks/clickhouse/client.ts';
import { fleetResponder, startAnthropicFake } from '../fakes/anthropic.ts';
import { config, uniqueName } from '../support/stack.ts';

const root = join(import.meta.dirname, '../..');
const HOUR = Date.UTC(2026, 0, 5, 14);

const analysisRequest: AnalysisRequest = {
  finding: {
    findingId: 'f1',
    agent: 'price-move',
    rule: 'drop-2m',
    symbol: 'ACME',
    portfolioId: 'growth',
    severity: 'high',
    windowStart: HOUR,
    windowEnd: HOUR + 120_000,
    eventTime: HOUR + 120_000,
    evidence: { return: -0.06 },
    summary: 'ACME fell 6% in 2 minutes',
    sourceTopic: 'm.signals.price',
    sourcePartition: 0,
    sourceOffset: 1,
  },
  portfolioName: 'Growth',
} as AnalysisRequest;

const digestRequest: DigestRequest = {
  draft: { digestId: 'd1', portfolioId: 'growth', hourStart: HOUR, findingCount: 1, alertCount: 1, bySeverity: { high: 1 }, topFindings: ['ACME fell 6% in 2 minutes'], summary: '', model: '' },
  portfolioName: 'Growth',
};

/** The key of each request the analyst (and the digest agent, whose batch takes a while) made, given these key settings. */
async function keysUsed(keys: Pick<Config['anthropic'], 'apiKey' | 'analystApiKey' | 'digestApiKey'>, askDigest = true): Promise<{ analyst: string[]; digest: string[] }> {
  const fake = await startAnthropicFake({ responder: fleetResponder });
  const database = uniqueName('scoped_keys');
  const memberConfig: Config = { ...config, anthropic: { ...config.anthropic, ...keys, baseUrl: fake.url }, clickhouse: { ...config.clickhouse, database } };
  await migrateDatabase(memberConfig, root);
  const fleet = await fleetServices(memberConfig, database.replaceAll('_', '-'), () => {});
  try {
    await fleet.services.analysis!(new Map([['0', analysisRequest]]));
    const afterAnalysis = fake.calls.length;
    if (askDigest) await fleet.services.digest!(new Map([['0', digestRequest]]));
    // The SDK sends the key as x-api-key or as a bearer token, depending on its version.
    const key = (i: number): string => fake.calls[i]!.headers['x-api-key'] ?? fake.calls[i]!.headers.authorization?.replace(/^Bearer /, '') ?? '';
    return {
      analyst: fake.calls.slice(0, afterAnalysis).map((_, i) => key(i)),
      digest: fake.calls.slice(afterAnalysis).map((_, i) => key(afterAnalysis + i)),
    };
  } finally {
    await fleet.close();
    await fake.close();
    const client = openClickHouse(config, { database: null });
    await client.command({ query: `DROP DATABASE IF EXISTS ${database}` });
    await client.close();
  }
}

describe('Anthropic keys scoped per agent type', () => {
  it('the analyst and the digest agent each send their own key', async () => {
    const used = await keysUsed({ apiKey: 'sk-ant-fleet', analystApiKey: 'sk-ant-analyst', digestApiKey: 'sk-ant-digest' });
    expect(used.analyst.length).toBeGreaterThan(0);
    expect(used.digest.length).toBeGreaterThan(0);
    expect(new Set(used.analyst)).toEqual(new Set(['sk-ant-analyst']));
    expect(new Set(used.digest)).toEqual(new Set(['sk-ant-digest']));
  });

  it('an agent type without its own key falls back to ANTHROPIC_API_KEY', async () => {
    const used = await keysUsed({ apiKey: 'sk-ant-fleet', analystApiKey: '', digestApiKey: 'sk-ant-digest' }, false);
    expect(used.analyst.length).toBeGreaterThan(0);
    expect(new Set(used.analyst)).toEqual(new Set(['sk-ant-fleet']));
  });
});
