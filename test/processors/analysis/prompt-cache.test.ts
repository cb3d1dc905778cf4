/**
 * Prompt caching engages for the alert analyst: a steady stream of alerts through the real SDK, the runtime's LLM
 * service (with its fleet-wide budget in the stack's Redis, as members run it) and the Anthropic stand-in, which
 * caches a prefix only when it reaches the model's minimum cacheable length, as the API does. The share of cache
 * reads is computed from the llm_calls audit rows the service emits.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createLlm,
  defaultPrices,
  RedisBudgetStore,
  type CacheTtlSetting,
  type LlmCallRecord,
} from '../../../runtime/llm/index.ts';
import { retry } from '../../../runtime/retry.ts';
import { createAnalyst, type Analyst, type AnalystOptions } from '../../../processors/analysis/analyst.ts';
import {
  ANALYSIS_SYSTEM_PROMPT,
  DEFAULT_RULES_TEXT,
  type PromptFinding,
} from '../../../processors/analysis/prompts.ts';
import { defaultModelTiers } from '../../../processors/analysis/tiers.ts';
import type { Portfolio } from '../../../processors/portfolio-exposure.ts';
import type { Severity } from '../../../processors/finding.ts';
import {
  fakeTokens,
  fleetResponder,
  minimumCacheableTokens,
  startAnthropicFake,
  type AnthropicFake,
} from '../../fakes/anthropic.ts';
import { config, uniqueName } from '../../support/stack.ts';
import { manualClock, recordingSleep } from '../../runtime/llm/support.ts';

const portfolios = JSON.parse(
  readFileSync(join(import.meta.dirname, '../../../topologies/portfolios.json'), 'utf8'),
) as Portfolio[];

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Rig {
  fake: AnthropicFake;
  analyst: Analyst;
  audits: LlmCallRecord[];
  clock: ReturnType<typeof manualClock>;
}

async function rig(options: AnalystOptions = {}, cacheTtl?: CacheTtlSetting): Promise<Rig> {
  const clock = manualClock(Date.UTC(2026, 0, 5, 10, 0, 0));
  // The stand-in's cache expires by the same hand-moved clock as the service's budget hours.
  const fake = await startAnthropicFake({ responder: fleetResponder, now: clock.now });
  cleanups.push(() => fake.close());
  const budgetStore = new RedisBudgetStore({ url: config.redis.url, application: uniqueName('cache') });
  cleanups.push(() => budgetStore.close());
  const audits: LlmCallRecord[] = [];
  const llm = createLlm({
    apiKey: 'sk-ant-test',
    baseUrl: fake.url,
    budgets: { default: { tokensPerHour: 10_000_000 } },
    budgetStore,
    models: [defaultModelTiers.triage, defaultModelTiers.strong],
    retry: retry({ initialMs: 1, maxMs: 10, maxAttempts: 3 }),
    onAudit: (record) => void audits.push(record),
    log: () => {},
    now: clock.now,
    sleep: recordingSleep().sleep,
    ...(cacheTtl !== undefined ? { cacheTtl } : {}),
  });
  cleanups.push(() => llm.close());
  return { fake, analyst: createAnalyst(llm, options), audits, clock };
}

const agents = ['price-move', 'volatility', 'volume-spike', 'news', 'filings'] as const;
const symbols = ['ACME', 'BOLT', 'CRUX', 'DYNA', 'ECHO', 'FLUX', 'GRID', 'HALO'];

/** The i-th alert of a steady stream: every agent, high and (one in four) critical, i.e. both model tiers. */
function alertFinding(i: number): PromptFinding {
  const agent = agents[i % agents.length]!;
  const severity: Severity = i % 4 === 3 ? 'critical' : 'high';
  return {
    id: `finding-${i}`,
    agent,
    rule: `${agent}-rule`,
    symbol: symbols[i % symbols.length]!,
    severity,
    evidence: { return: -0.01 * (i % 9), weight: 0.05 + (i % 4) * 0.05, multiple: 3 + (i % 7) },
    summary: `${symbols[i % symbols.length]} finding number ${i} (${(5 + (i % 4) * 5).toFixed(1)}% of Growth)`,
  };
}

/** Analyses `count` alerts one after another, `gapMs` of the clock apart, as a steady stream. */
async function stream(r: Rig, count: number, gapMs: number): Promise<void> {
  for (let i = 0; i < count; i += 1) {
    const answer = await r.analyst.analyzeFinding(alertFinding(i), { portfolioName: 'Growth' });
    expect(answer.model).not.toBe('rules-only');
    r.clock.advance(gapMs);
  }
}

interface SentMessages {
  body: { model: string; system: Array<{ cache_control?: { type: string; ttl?: string } }> };
  usage: {
    cache_creation_input_tokens: number;
    cache_read_input_tokens: number;
    cache_creation: { ephemeral_5m_input_tokens: number; ephemeral_1h_input_tokens: number };
  };
}

/** The /v1/messages requests the stand-in received, with the usage it answered. */
function sent(r: Rig, model?: string): SentMessages[] {
  return r.fake.calls
    .filter((c) => c.path === '/v1/messages' && c.status === 200)
    .map((c) => ({
      body: c.body as SentMessages['body'],
      usage: (c.response as { usage: SentMessages['usage'] }).usage,
    }))
    .filter((c) => model === undefined || c.body.model === model);
}

/** The TTL each request asked for on its breakpoint ('5m' when it sent none, the API's default). */
function ttls(calls: readonly SentMessages[]): string[] {
  return calls.map((c) => c.body.system[1]!.cache_control!.ttl ?? '5m');
}

const totalCost = (rows: readonly LlmCallRecord[]): number => rows.reduce((n, r) => n + r.cost_usd, 0);

/** Cache reads as a share of all input tokens (input + cache write + cache read) of the given rows. */
function readShare(rows: readonly LlmCallRecord[]): number {
  const input = rows.reduce((n, r) => n + r.input_tokens + r.cache_write_tokens + r.cache_read_tokens, 0);
  return rows.reduce((n, r) => n + r.cache_read_tokens, 0) / input;
}

describe('prompt caching of the analyst', () => {
  it('the default prefix (system prompt + rule book) reaches the minimum cacheable length of both default models', () => {
    const prefix = fakeTokens(ANALYSIS_SYSTEM_PROMPT) + fakeTokens(DEFAULT_RULES_TEXT);
    for (const model of [defaultModelTiers.triage, defaultModelTiers.strong])
      expect(prefix, model).toBeGreaterThanOrEqual(minimumCacheableTokens(model));
  });

  it('in a steady stream of alerts, cache reads are at least 80% of the input tokens after the first call per model', async () => {
    const r = await rig({ portfolios });
    await stream(r, 40, 20_000); // one alert every 20 s: well within the 5-minute TTL
    const ok = r.audits.filter((a) => a.outcome === 'ok');
    expect(ok).toHaveLength(40);
    // The audit carries what the API reported, call by call.
    const calls = r.fake.calls.filter((c) => c.path === '/v1/messages');
    for (const [i, call] of calls.entries()) {
      const usage = (call.response as { usage: Record<string, number> }).usage;
      expect([ok[i]!.cache_read_tokens, ok[i]!.cache_write_tokens]).toEqual([
        usage.cache_read_input_tokens,
        usage.cache_creation_input_tokens,
      ]);
    }
    for (const model of [defaultModelTiers.triage, defaultModelTiers.strong]) {
      const rows = ok.filter((a) => a.model === model);
      expect(rows.length, model).toBeGreaterThan(2);
      // The first call of each model writes the prefix; every later one reads it.
      expect(rows[0]!.cache_write_tokens, model).toBeGreaterThanOrEqual(minimumCacheableTokens(model));
      expect(rows[0]!.cache_read_tokens, model).toBe(0);
      for (const row of rows.slice(1)) {
        expect(row.cache_write_tokens).toBe(0);
        expect(row.cache_read_tokens).toBe(rows[0]!.cache_write_tokens);
      }
    }
    const firstOfEach = new Set(
      [defaultModelTiers.triage, defaultModelTiers.strong].map((m) => ok.find((a) => a.model === m)),
    );
    const steady = ok.filter((a) => !firstOfEach.has(a));
    expect(readShare(steady)).toBeGreaterThanOrEqual(0.8);
    // Calls this close together read a 5-minute entry: `auto` has no reason to pay for an hour's.
    expect(new Set(ttls(sent(r)))).toEqual(new Set(['5m']));
  });

  it('a prefix below the model minimum is not cached: no error, no cache tokens, every token billed as input', async () => {
    // The rule book before it was written out: about 540 tokens of prefix, under every default model's minimum.
    const shortRules = DEFAULT_RULES_TEXT.slice(0, 1_800);
    const prefix = fakeTokens(ANALYSIS_SYSTEM_PROMPT) + fakeTokens(shortRules);
    expect(prefix).toBeLessThan(minimumCacheableTokens(defaultModelTiers.strong));
    const r = await rig({ rulesText: shortRules });
    await stream(r, 12, 20_000);
    const ok = r.audits.filter((a) => a.outcome === 'ok');
    expect(ok).toHaveLength(12);
    for (const row of ok) {
      expect([row.cache_write_tokens, row.cache_read_tokens]).toEqual([0, 0]);
      expect(row.input_tokens).toBeGreaterThan(prefix);
    }
    expect(readShare(ok)).toBe(0);
  });

  it('a prefix long enough for one model but not another is cached for the first only', async () => {
    // Between Sonnet's minimum (1,024) and Haiku's (4,096): high findings (Haiku) are not cached, critical ones are.
    const rulesText = DEFAULT_RULES_TEXT.slice(0, 8_000);
    const prefix = fakeTokens(ANALYSIS_SYSTEM_PROMPT) + fakeTokens(rulesText);
    expect(prefix).toBeGreaterThanOrEqual(minimumCacheableTokens(defaultModelTiers.strong));
    expect(prefix).toBeLessThan(minimumCacheableTokens(defaultModelTiers.triage));
    const r = await rig({ rulesText });
    await stream(r, 8, 20_000);
    const ok = r.audits.filter((a) => a.outcome === 'ok');
    const triage = ok.filter((a) => a.model === defaultModelTiers.triage);
    const strong = ok.filter((a) => a.model === defaultModelTiers.strong);
    expect(triage.every((a) => a.cache_read_tokens + a.cache_write_tokens === 0)).toBe(true);
    expect(strong.map((a) => a.cache_read_tokens > 0)).toEqual([false, true]);
  });

  it('a cache entry lives 5 minutes from its last use: a quiet stream pays a write on every call', async () => {
    const r = await rig({}, '5m');
    // Within the TTL, each read refreshes the entry: 4.5 minutes apart, the prefix is read every time.
    await stream(r, 3, 270_000);
    // Then a silence longer than 5 minutes: the entry has expired and the next call writes it again.
    r.clock.advance(300_001 - 270_000);
    await r.analyst.analyzeFinding(alertFinding(100), { portfolioName: 'Growth' });
    const triage = r.audits.filter((a) => a.outcome === 'ok' && a.model === defaultModelTiers.triage);
    expect(triage.map((a) => [a.cache_write_tokens > 0, a.cache_read_tokens > 0])).toEqual([
      [true, false],
      [false, true],
      [false, true],
      [true, false],
    ]);
  });

  it('with alerts more than 5 minutes apart, auto asks for a 1-hour TTL, reads the prefix and costs less than 5m', async () => {
    // Every 8 minutes: the triage model is called every 8 or 16 minutes, the strong one every 32.
    const quiet = await rig({ portfolios }, '5m');
    await stream(quiet, 12, 480_000);
    const auto = await rig({ portfolios });
    await stream(auto, 12, 480_000);
    const okQuiet = quiet.audits.filter((a) => a.outcome === 'ok');
    const okAuto = auto.audits.filter((a) => a.outcome === 'ok');
    expect([okQuiet.length, okAuto.length]).toEqual([12, 12]);
    // 5m: every call finds the entry expired and writes the whole prefix again at 1.25×.
    expect(okQuiet.every((a) => a.cache_write_tokens > 0 && a.cache_read_tokens === 0)).toBe(true);
    for (const model of [defaultModelTiers.triage, defaultModelTiers.strong]) {
      const calls = sent(auto, model);
      // The first call has no gap to go by (5m); from the second, the measured gap asks for an hour.
      expect(ttls(calls), model).toEqual(['5m', ...calls.slice(1).map(() => '1h')]);
      // The second call writes a 1-hour entry, reported apart like the API; every later one reads it.
      expect(calls[1]!.usage.cache_creation, model).toEqual({
        ephemeral_5m_input_tokens: 0,
        ephemeral_1h_input_tokens: calls[1]!.usage.cache_creation_input_tokens,
      });
      expect(calls[1]!.usage.cache_creation_input_tokens, model).toBeGreaterThanOrEqual(minimumCacheableTokens(model));
      for (const call of calls.slice(2)) {
        expect([call.usage.cache_creation_input_tokens, call.usage.cache_read_input_tokens], model).toEqual([
          0,
          calls[1]!.usage.cache_creation_input_tokens,
        ]);
      }
    }
    // The audit prices the 1-hour write at 2× input (Haiku: $2 / MTok), not at the 5-minute 1.25×.
    const price = defaultPrices[defaultModelTiers.triage]!;
    const hourWrite = okAuto.filter((a) => a.model === defaultModelTiers.triage)[1]!;
    expect(hourWrite.cost_usd).toBeCloseTo(
      (hourWrite.input_tokens * price.input +
        hourWrite.cache_write_tokens * price.cacheWrite1h +
        hourWrite.output_tokens * price.output) /
        1_000_000,
      12,
    );
    expect(price.cacheWrite1h).toBe(2 * price.input);
    // Two writes per model (the first call's 5-minute one, then the hour's) and reads after: about two thirds of the
    // bill of writing every time already over 12 alerts, falling towards a third as the stream goes on (bench/llm-economy.ts).
    expect(totalCost(okAuto)).toBeLessThan(totalCost(okQuiet) * 0.75);
  });

  it('the stand-in honours the TTL asked for: a 1-hour entry is read 50 minutes later, and expires after an hour', async () => {
    const r = await rig({}, '1h');
    await stream(r, 3, 50 * 60_000);
    r.clock.advance(60 * 60_001 - 50 * 60_000);
    await r.analyst.analyzeFinding(alertFinding(100), { portfolioName: 'Growth' });
    const calls = sent(r, defaultModelTiers.triage);
    expect(ttls(calls)).toEqual(['1h', '1h', '1h', '1h']);
    expect(
      calls.map((c) => [c.usage.cache_creation.ephemeral_1h_input_tokens > 0, c.usage.cache_read_input_tokens > 0]),
    ).toEqual([
      [true, false],
      [false, true],
      [false, true],
      [true, false],
    ]);
    expect(calls.every((c) => c.usage.cache_creation.ephemeral_5m_input_tokens === 0)).toBe(true);
  });

  it('with calls more than an hour apart, auto keeps 5m: a 1-hour entry would have expired too', async () => {
    const r = await rig();
    await stream(r, 3, 2 * 3_600_000);
    const calls = sent(r, defaultModelTiers.triage);
    expect(ttls(calls)).toEqual(['5m', '5m', '5m']);
    expect(calls.every((c) => c.usage.cache_creation.ephemeral_5m_input_tokens > 0)).toBe(true);
  });

  it('refuses a cache TTL setting it does not know, saying which it takes', () => {
    expect(() =>
      createLlm({
        apiKey: 'sk-ant-test',
        baseUrl: 'http://127.0.0.1:9',
        budgets: { default: { tokensPerHour: 1_000 } },
        cacheTtl: '2h' as CacheTtlSetting,
      }),
    ).toThrow(/cacheTtl must be one of auto, 5m, 1h, got "2h"/);
  });
});
