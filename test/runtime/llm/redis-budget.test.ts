/**
 * Fleet-wide LLM budgets in the real local Redis. Every test works under its own application name, so its keys
 * (`as:llm-budget:{<application>:…}`) are its own; nothing here flushes the shared Redis.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import {
  createBudget,
  createLlm,
  HOUR_MS,
  hourStart,
  inputTokenUpperBound,
  promptHash,
  RedisBudgetStore,
  type Llm,
  type LlmCallRecord,
} from '../../../runtime/llm/index.ts';
import { analysisPrompt, DEFAULT_RULES_TEXT } from '../../../processors/analysis/prompts.ts';
import { retry } from '../../../runtime/retry.ts';
import { startAnthropicFake, type AnthropicFake, type FakeMessagesRequest } from '../../fakes/anthropic.ts';
import { config, uniqueName } from '../../support/stack.ts';
import { analystOn, finding, manualClock, messagesCalls, recordingSleep, usageOf, type AnalystLlm } from './support.ts';

const RETENTION_MS = 2 * HOUR_MS;
const redis = new Redis(config.redis.url);
const stores: RedisBudgetStore[] = [];
const services: Llm[] = [];
const fakes: AnthropicFake[] = [];

function store(application: string, url = config.redis.url): RedisBudgetStore {
  const s = new RedisBudgetStore({
    url,
    application,
    retry: retry({ initialMs: 1, maxMs: 10, maxAttempts: 3 }),
    sleep: recordingSleep().sleep,
  });
  stores.push(s);
  return s;
}

afterEach(async () => {
  for (const llm of services.splice(0)) llm.close();
  await Promise.all(stores.splice(0).map((s) => s.close()));
  await Promise.all(fakes.splice(0).map((f) => f.close()));
});
afterAll(() => redis.disconnect());

const unlimitedUsd = { microUsd: Infinity };

describe('RedisBudgetStore', () => {
  it('reserves atomically: concurrent reservations from two connections never pass the limit', async () => {
    const application = uniqueName('budget');
    const [a, b] = [store(application), store(application)];
    const bucket = { agent: 'news', hourStartMs: hourStart(Date.now()) };

    // 60 reservations of 7 tokens race for 100: exactly 14 fit (98), whoever sends them.
    const tokenRace = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        (i % 2 === 0 ? a : b).tryReserve(bucket, { tokens: 7, microUsd: 0 }, { tokens: 100, ...unlimitedUsd }),
      ),
    );
    expect(tokenRace.filter(Boolean)).toHaveLength(14);
    expect(await a.usage(bucket)).toEqual({ tokens: 98, microUsd: 0 });
    expect(await b.usage(bucket)).toEqual({ tokens: 98, microUsd: 0 });

    // The dollar ceiling is checked in the same script: 3 × 300 µ$ fit in 1,000, the rest do not.
    const usdBucket = { agent: 'filings', hourStartMs: bucket.hourStartMs };
    const usdRace = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        (i % 2 === 0 ? a : b).tryReserve(
          usdBucket,
          { tokens: 1, microUsd: 300 },
          { tokens: 1_000_000, microUsd: 1_000 },
        ),
      ),
    );
    expect(usdRace.filter(Boolean)).toHaveLength(3);
    expect(await b.usage(usdBucket)).toEqual({ tokens: 3, microUsd: 900 });
  });

  it('settles: releases the unused part, adds overshoot, never goes below zero and never revives a lost bucket', async () => {
    const application = uniqueName('budget');
    const s = store(application);
    const clock = manualClock(hourStart(Date.now()) + 60_000);
    const budget = createBudget({
      budgets: { default: { tokensPerHour: 1_000, usdPerHour: 0.01 } },
      store: s,
      now: clock.now,
    });

    const first = await budget.reserve('news', { tokens: 600, microUsd: 4_000 });
    expect((await budget.reserve('news', { tokens: 600, microUsd: 0 })).ok).toBe(false);
    if (!first.ok) throw new Error(first.reason);
    await budget.settle(first.reservation, { tokens: 150, microUsd: 1_000 });
    await budget.settle(first.reservation, { tokens: 150, microUsd: 1_000 }); // settles once
    expect(await budget.used('news')).toEqual({ tokens: 150, microUsd: 1_000 });
    expect((await budget.reserve('news', { tokens: 850, microUsd: 0 })).ok).toBe(true);
    expect((await budget.reserve('news', { tokens: 1, microUsd: 0 })).ok).toBe(false);

    const bucket = { agent: 'news', hourStartMs: hourStart(clock.now()) };
    // Overshoot (usage above the reservation) is real spend: added in full.
    await s.adjust(bucket, { tokens: 25, microUsd: 5 });
    expect(await s.usage(bucket)).toEqual({ tokens: 1_025, microUsd: 1_005 });
    // A release larger than what the bucket holds stops at zero: it cannot create credit.
    await s.adjust(bucket, { tokens: -5_000, microUsd: -5_000 });
    expect(await s.usage(bucket)).toEqual({ tokens: 0, microUsd: 0 });

    // A bucket that is gone (expired, or lost with Redis): a release does not bring it back as negative usage…
    await redis.del(s.keyOf(bucket));
    await s.adjust(bucket, { tokens: -300, microUsd: -300 });
    expect(await redis.exists(s.keyOf(bucket))).toBe(0);
    // …while an overshoot is still recorded, with an expiry.
    await s.adjust(bucket, { tokens: 40, microUsd: -10 });
    expect(await s.usage(bucket)).toEqual({ tokens: 40, microUsd: 0 });
    expect(await redis.pttl(s.keyOf(bucket))).toBeGreaterThan(0);
  });

  it('starts a new bucket each hour, per application, and every bucket expires a couple of hours after its hour', async () => {
    const application = uniqueName('budget');
    const s = store(application);
    const hour = hourStart(Date.now());
    const clock = manualClock(hour + HOUR_MS - 1_000);
    const budget = createBudget({ budgets: { default: { tokensPerHour: 100 } }, store: s, now: clock.now });

    expect((await budget.reserve('volume', { tokens: 100, microUsd: 0 })).ok).toBe(true);
    expect((await budget.reserve('volume', { tokens: 1, microUsd: 0 })).ok).toBe(false);
    clock.advance(1_000);
    expect((await budget.reserve('volume', { tokens: 100, microUsd: 0 })).ok).toBe(true);

    const thisHour = s.keyOf({ agent: 'volume', hourStartMs: hour });
    const nextHour = s.keyOf({ agent: 'volume', hourStartMs: hour + HOUR_MS });
    expect(thisHour).toBe(`as:llm-budget:{${application}:volume:${new Date(hour).toISOString().slice(0, 13)}}`);
    expect(nextHour).not.toBe(thisHour);
    expect(await redis.hget(thisHour, 'tokens')).toBe('100');
    expect(await redis.hget(nextHour, 'tokens')).toBe('100');
    // Expiry at the end of the bucket's hour + 2 h: at most 3 h away for this hour, more than 2 h for the next.
    const ttlThis = await redis.pttl(thisHour);
    const ttlNext = await redis.pttl(nextHour);
    expect(ttlThis).toBeGreaterThan(0);
    expect(ttlThis).toBeLessThanOrEqual(HOUR_MS + RETENTION_MS);
    expect(ttlNext).toBeGreaterThan(RETENTION_MS);
    expect(ttlNext).toBeLessThanOrEqual(2 * HOUR_MS + RETENTION_MS);

    // A bucket of an hour long past (a caller whose clock is far behind) is still kept, for the retention.
    const old = { agent: 'volume', hourStartMs: Date.UTC(2020, 0, 1, 10) };
    expect(await s.tryReserve(old, { tokens: 5, microUsd: 0 }, { tokens: 100, ...unlimitedUsd })).toBe(true);
    const ttlOld = await redis.pttl(s.keyOf(old));
    expect(ttlOld).toBeGreaterThan(0);
    expect(ttlOld).toBeLessThanOrEqual(RETENTION_MS);

    // Another application's members share nothing with this one.
    const other = store(uniqueName('budget'));
    expect(await other.usage({ agent: 'volume', hourStartMs: hour })).toEqual({ tokens: 0, microUsd: 0 });
    expect(
      await other.tryReserve(
        { agent: 'volume', hourStartMs: hour },
        { tokens: 100, microUsd: 0 },
        { tokens: 100, ...unlimitedUsd },
      ),
    ).toBe(true);
  });
});

interface Member {
  llm: AnalystLlm;
  audits: LlmCallRecord[];
}

async function member(
  fake: AnthropicFake,
  application: string,
  tokensPerHour: number,
  now: () => number,
  url = config.redis.url,
): Promise<Member> {
  const audits: LlmCallRecord[] = [];
  const llm = analystOn(
    createLlm({
      apiKey: 'sk-ant-test',
      baseUrl: fake.url,
      budgets: { default: { tokensPerHour } },
      budgetStore: store(application, url),
      retry: retry({ initialMs: 1, maxMs: 10, maxAttempts: 3 }),
      onAudit: (record) => void audits.push(record),
      log: () => {},
      now,
      sleep: recordingSleep().sleep,
    }),
  );
  services.push(llm);
  return { llm, audits };
}

/** What the token budget counts of a call: everything but cache reads (budget.ts, `budgetTokens`). */
const auditTotal = (a: LlmCallRecord): number => a.input_tokens + a.output_tokens + a.cache_write_tokens;

describe('fleet budget: two LLM services (two processes) sharing one Redis budget', () => {
  it('never spend more than the budget together; the rest answer rules-only, and the audit matches the calls one to one', async () => {
    const fake = await startAnthropicFake();
    fakes.push(fake);
    const application = uniqueName('fleet');
    const clock = manualClock(hourStart(Date.now()) + 60_000);
    const worstCase =
      inputTokenUpperBound(analysisPrompt(finding({ id: 'f-a-00', symbol: 'SYMA00' }), DEFAULT_RULES_TEXT)) + 600;
    const limit = 3 * worstCase;
    const [one, two] = [
      await member(fake, application, limit, clock.now),
      await member(fake, application, limit, clock.now),
    ];

    const perMember = 25;
    const fire = (m: Member, name: string): Promise<Awaited<ReturnType<AnalystLlm['analyzeFinding']>>[]> =>
      Promise.all(
        Array.from({ length: perMember }, (_, i) =>
          m.llm.analyzeFinding(
            finding({ id: `f-${name}-${i}`, symbol: `SYM${name.toUpperCase()}${String(i).padStart(2, '0')}` }),
          ),
        ),
      );
    const results = (await Promise.all([fire(one, 'a'), fire(two, 'b')])).flat();

    const calls = messagesCalls(fake);
    const callTotal = (c: (typeof calls)[number]): number => {
      const u = usageOf(c);
      return u.input_tokens + u.output_tokens + u.cache_creation_input_tokens;
    };
    const spent = calls.reduce((n, c) => n + callTotal(c), 0);
    // The guarantee, across both processes: what the API saw fits one budget.
    expect(calls.length).toBeGreaterThan(0);
    expect(spent).toBeLessThanOrEqual(limit);
    // And the test has teeth: either member alone reserved more than the whole budget (every call reserves its
    // worst case, a cache miss), so the budget had to refuse some of them.
    expect(perMember * worstCase).toBeGreaterThan(limit);
    // Redis agrees once everything has settled.
    const bucket = { agent: 'price-move', hourStartMs: hourStart(clock.now()) };
    expect((await store(application).usage(bucket)).tokens).toBe(spent);

    // Everything the budget refused is rules-only, saying so; everything else is the model's.
    const refused = results.filter((r) => r.model === 'rules-only');
    expect(refused.length).toBeGreaterThan(0);
    for (const r of refused) expect(r.reason).toMatch(/^budget exhausted: agent price-move has used \d+ of \d+ tokens/);
    expect(results.length - refused.length).toBe(calls.length);

    // One audit record per analysis; the `ok` ones are exactly the calls the API recorded, prompt and usage.
    const audits = [...one.audits, ...two.audits];
    expect(audits).toHaveLength(2 * perMember);
    expect(audits.filter((a) => a.outcome === 'budget-exhausted')).toHaveLength(refused.length);
    const ok = audits.filter((a) => a.outcome === 'ok');
    const fromAudit = ok
      .map(
        (a) => `${a.prompt_hash} ${a.input_tokens} ${a.output_tokens} ${a.cache_read_tokens} ${a.cache_write_tokens}`,
      )
      .sort();
    const fromApi = calls
      .map((c) => {
        const body = c.body as FakeMessagesRequest;
        const u = usageOf(c);
        return `${promptHash({ system: body.system, messages: body.messages } as Parameters<typeof promptHash>[0])} ${u.input_tokens} ${u.output_tokens} ${u.cache_read_input_tokens} ${u.cache_creation_input_tokens}`;
      })
      .sort();
    expect(fromAudit).toEqual(fromApi);
    expect(new Set(fromAudit).size).toBe(fromAudit.length);
    expect(ok.reduce((n, a) => n + auditTotal(a), 0)).toBe(spent);
  });

  it('sends nothing when Redis is unreachable: the answer is rules-only and says the budget store is unavailable', async () => {
    const fake = await startAnthropicFake();
    fakes.push(fake);
    const { llm, audits } = await member(fake, uniqueName('fleet'), 1_000_000, Date.now, 'redis://127.0.0.1:1');

    const result = await llm.analyzeFinding(finding());
    expect(fake.calls).toHaveLength(0);
    expect(result).toMatchObject({ model: 'rules-only', severity: 'high' });
    expect(result.reason).toMatch(/^budget store unavailable: Redis 127\.0\.0\.1:1 did not answer the budget reserve/);
    expect(audits.map((a) => a.outcome)).toEqual(['error']);
    expect(audits[0]).toMatchObject({ input_tokens: 0, output_tokens: 0, cost_usd: 0 });
  });
});
