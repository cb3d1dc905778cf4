/**
 * A member's enrichment services are those its topology declares (cli/services.ts builds them): a service that is
 * not declared is a clear error, a topology without services runs without them. The market fleet's: API keys scoped
 * per agent type — the alert analyst calls with AS_ANTHROPIC_API_KEY_ANALYST and the digest agent with
 * AS_ANTHROPIC_API_KEY_DIGEST, each falling back to ANTHROPIC_API_KEY. The Anthropic stand-in records the x-api-key
 * header of every request.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { memberServices, servicesOf } from '../../cli/services.ts';
import type { AnalysisRequest } from '../../processors/alert-analyst.ts';
import type { DigestRequest } from '../../processors/digest.ts';
import type { Config } from '../../runtime/config/index.ts';
import { AgentStreamsError, ErrorCode } from '../../runtime/errors.ts';
import { defineTopology, processor, topic } from '../../runtime/index.ts';
import { marketSignals } from '../../topologies/market-signals.ts';
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
  draft: {
    digestId: 'd1',
    portfolioId: 'growth',
    hourStart: HOUR,
    findingCount: 1,
    alertCount: 1,
    bySeverity: { high: 1 },
    topFindings: ['ACME fell 6% in 2 minutes'],
    summary: '',
    model: '',
  },
  portfolioName: 'Growth',
};

/** The key of each request the analyst (and the digest agent, whose batch takes a while) made, given these key settings. */
async function keysUsed(
  keys: Pick<Config['anthropic'], 'apiKey' | 'analystApiKey' | 'digestApiKey'>,
  askDigest = true,
): Promise<{ analyst: string[]; digest: string[] }> {
  const fake = await startAnthropicFake({ responder: fleetResponder });
  const database = uniqueName('scoped_keys');
  const memberConfig: Config = {
    ...config,
    anthropic: { ...config.anthropic, ...keys, baseUrl: fake.url },
    clickhouse: { ...config.clickhouse, database },
  };
  await migrateDatabase(memberConfig, root);
  const fleet = await memberServices(
    memberConfig,
    marketSignals({ application: database.replaceAll('_', '-') }),
    ['analysis', 'digest'],
    () => {},
  );
  try {
    await fleet.services.analysis!(new Map([['0', analysisRequest]]));
    const afterAnalysis = fake.calls.length;
    if (askDigest) await fleet.services.digest!(new Map([['0', digestRequest]]));
    // The SDK sends the key as x-api-key or as a bearer token, depending on its version.
    const key = (i: number): string =>
      fake.calls[i]!.headers['x-api-key'] ?? fake.calls[i]!.headers.authorization?.replace(/^Bearer /, '') ?? '';
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
    const used = await keysUsed({
      apiKey: 'sk-ant-fleet',
      analystApiKey: 'sk-ant-analyst',
      digestApiKey: 'sk-ant-digest',
    });
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

describe('services a topology declares', () => {
  const input = topic<{ n: number }>('t.in', 'test.N');
  const enriching = (services?: Parameters<typeof defineTopology>[0]['services']) =>
    defineTopology({
      application: 't',
      topics: { [input.name]: { partitions: 1 } },
      processors: {
        p: processor({ inputs: [input], enrich: { service: 'lookup', request: () => 1 }, process: () => {} }),
      },
      ...(services ? { services } : {}),
    });

  it('an enrich.service the topology does not declare is an error that says how to declare it', async () => {
    const topology = enriching({ other: () => async () => new Map() });
    expect(servicesOf(topology, 'p')).toEqual(['lookup']);
    const failure = await memberServices(config, topology, servicesOf(topology, 'p'), () => {}).catch(
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(AgentStreamsError);
    expect((failure as AgentStreamsError).code).toBe(ErrorCode.TOPOLOGY_INVALID);
    expect((failure as Error).message).toBe(
      `topology t does not declare the enrichment service "lookup" that its processors ask for (enrich.service); add services: { 'lookup': (deps) => … } to its defineTopology() (it declares other)`,
    );
  });

  it('builds a declared service without an LLM, opening nothing for it, and answers through it', async () => {
    const topology = enriching({
      lookup: (deps) => async (requests) =>
        new Map([...requests.keys()].map((offset) => [offset, `${deps.application}:${offset}`])),
    });
    const member = await memberServices(config, topology, ['lookup'], () => {});
    try {
      expect(await member.services.lookup!(new Map([['7', 1]]))).toEqual(new Map([['7', 't:7']]));
    } finally {
      await member.close();
    }
  });

  it('a processor that enriches nothing gets no services, whatever the topology declares', async () => {
    const member = await memberServices(
      config,
      marketSignals({ application: 'm' }),
      servicesOf(marketSignals({ application: 'm' }), 'router'),
      () => {},
    );
    expect(member.services).toEqual({});
    await member.close();
  });
});
