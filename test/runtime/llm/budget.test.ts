import { describe, expect, it } from 'vitest';
import {
  createBudget,
  HOUR_MS,
  hourStart,
  InMemoryBudgetStore,
  inputTokenUpperBound,
  type LlmCallRecord,
} from '../../../runtime/llm/index.ts';
import { budgetTokens, settledAmount, toMicroUsd } from '../../../runtime/llm/budget.ts';
import { costUsd, defaultPrices, maxCostUsd } from '../../../runtime/llm/models.ts';
import { analysisPrompt, DEFAULT_RULES_TEXT } from '../../../processors/analysis/prompts.ts';
import { finding, harness, manualClock, messagesCalls, usageOf } from './support.ts';

/** What the token budget counts of a call: everything but cache reads (budget.ts, `budgetTokens`). */
const total = (a: LlmCallRecord): number => a.input_tokens + a.output_tokens + a.cache_write_tokens;

describe('budget', () => {
  it('reserves only what fits, settles to the actual usage, and settles once', async () => {
    const clock = manualClock();
    const store = new InMemoryBudgetStore();
    const budget = createBudget({ budgets: { default: { tokensPerHour: 1_000 } }, store, now: clock.now });
    const a = await budget.reserve('news', { tokens: 600, microUsd: 0 });
    const b = await budget.reserve('news', { tokens: 600, microUsd: 0 });
    expect(a.ok).toBe(true);
    expect(b).toMatchObject({ ok: false });
    if (b.ok || !a.ok) throw new Error('unreachable');
    expect(b.reason).toMatch(/^budget exhausted: agent news has used 600 of 1000 tokens/);

    await budget.settle(a.reservation, { tokens: 150, microUsd: 0 });
    await budget.settle(a.reservation, { tokens: 150, microUsd: 0 });
    expect((await budget.used('news')).tokens).toBe(150);
    expect((await budget.reserve('news', { tokens: 850, microUsd: 0 })).ok).toBe(true);
    expect((await budget.reserve('news', { tokens: 1, microUsd: 0 })).ok).toBe(false);
  });

  it('keeps agent types apart and honours per-agent limits and USD ceilings', async () => {
    const budget = createBudget({
      budgets: { default: { tokensPerHour: 100 }, perAgent: { news: { tokensPerHour: 10_000, usdPerHour: 0.01 } } },
      now: manualClock().now,
    });
    expect((await budget.reserve('price-move', { tokens: 100, microUsd: 0 })).ok).toBe(true);
    expect((await budget.reserve('price-move', { tokens: 1, microUsd: 0 })).ok).toBe(false);
    expect((await budget.reserve('news', { tokens: 5_000, microUsd: 9_000 })).ok).toBe(true);
    const overUsd = await budget.reserve('news', { tokens: 10, microUsd: 2_000 });
    expect(overUsd).toMatchObject({ ok: false });
    if (!overUsd.ok) expect(overUsd.reason).toMatch(/\$0\.0090 of \$0\.0100/);
  });

  it('buckets by wall-clock hour: a new hour starts from zero', async () => {
    const clock = manualClock(Date.UTC(2026, 0, 5, 10, 59, 59));
    const budget = createBudget({ budgets: { default: { tokensPerHour: 100 } }, now: clock.now });
    expect((await budget.reserve('a', { tokens: 100, microUsd: 0 })).ok).toBe(true);
    expect((await budget.reserve('a', { tokens: 1, microUsd: 0 })).ok).toBe(false);
    clock.advance(1_000);
    expect(hourStart(clock.now())).toBe(Date.UTC(2026, 0, 5, 11));
    expect((await budget.reserve('a', { tokens: 100, microUsd: 0 })).ok).toBe(true);
    expect(HOUR_MS).toBe(3_600_000);
  });

  it('settles a reservation into the hour it was made in, even after the hour has turned', async () => {
    const clock = manualClock(Date.UTC(2026, 0, 5, 10, 59, 59));
    const store = new InMemoryBudgetStore();
    const budget = createBudget({ budgets: { default: { tokensPerHour: 100 } }, store, now: clock.now });
    const r = await budget.reserve('a', { tokens: 80, microUsd: 0 });
    clock.advance(2_000);
    if (!r.ok) throw new Error('unreachable');
    await budget.settle(r.reservation, { tokens: 30, microUsd: 0 });
    expect((await store.usage({ agent: 'a', hourStartMs: Date.UTC(2026, 0, 5, 10) })).tokens).toBe(30);
    expect((await budget.used('a')).tokens).toBe(0);
  });

  it('refuses invalid limits at start-up', () => {
    expect(() => createBudget({ budgets: { default: { tokensPerHour: -1 } } })).toThrow(
      /tokensPerHour must be a whole number >= 0/,
    );
  });
});

describe('budget under concurrent analysis', () => {
  it('is never exceeded by many concurrent calls; refused calls are audited as budget-exhausted', async () => {
    const limit = 20_000;
    const store = new InMemoryBudgetStore();
    const { fake, llm, audits, clock } = await harness({
      budgets: { default: { tokensPerHour: limit } },
      budgetStore: store,
      concurrency: 4,
    });
    const findings = Array.from({ length: 40 }, (_, i) => finding({ id: `f-${i}`, symbol: `SYM${i}` }));
    const results = await Promise.all(findings.map((f) => llm.analyzeFinding(f)));

    const ok = audits.filter((a) => a.outcome === 'ok');
    const refused = audits.filter((a) => a.outcome === 'budget-exhausted');
    expect(ok.length).toBeGreaterThan(0);
    expect(refused.length).toBeGreaterThan(0);
    expect(ok.length + refused.length).toBe(40);
    expect(audits).toHaveLength(40);
    // The guarantee: what was actually used fits the budget, and the store agrees once every call has settled.
    const used = ok.reduce((n, a) => n + total(a), 0);
    expect(used).toBeLessThanOrEqual(limit);
    expect((await store.usage({ agent: 'price-move', hourStartMs: hourStart(clock.now()) })).tokens).toBe(used);
    // Only the calls the budget admitted were sent, and the audit carries exactly what the API reported.
    const calls = messagesCalls(fake);
    expect(calls).toHaveLength(ok.length);
    const sum = (c: (typeof calls)[number]): number => {
      const u = usageOf(c);
      return u.input_tokens + u.output_tokens + u.cache_creation_input_tokens;
    };
    expect(calls.reduce((n, c) => n + sum(c), 0)).toBe(used);

    const fallbacks = results.filter((r) => r.model === 'rules-only');
    expect(fallbacks).toHaveLength(refused.length);
    for (const r of fallbacks) expect(r.reason).toMatch(/^budget exhausted/);
    for (const a of refused)
      expect(a).toMatchObject({
        input_tokens: 0,
        output_tokens: 0,
        cost_usd: 0,
        latency_ms: 0,
        model: 'claude-haiku-5-5',
      });
  });

  it('refuses a call whose worst case does not fit, though its actual use would have', async () => {
    const worstCase = inputTokenUpperBound(analysisPrompt(finding(), DEFAULT_RULES_TEXT)) + 600;
    const { fake, llm, audits } = await harness({ budgets: { default: { tokensPerHour: worstCase - 1 } } });
    const result = await llm.analyzeFinding(finding());
    expect(result.reason).toMatch(/^budget exhausted/);
    expect(fake.calls).toHaveLength(0);
    expect(audits.map((a) => a.outcome)).toEqual(['budget-exhausted']);
  });

  it('bounds spend in dollars too', async () => {
    const { llm, audits } = await harness({ budgets: { default: { tokensPerHour: 1_000_000, usdPerHour: 0.000001 } } });
    expect((await llm.analyzeFinding(finding())).reason).toMatch(/^budget exhausted/);
    expect(audits.map((a) => a.outcome)).toEqual(['budget-exhausted']);
  });
});

describe('what a call counts against the budget', () => {
  const tokensOf = (a: LlmCallRecord) => ({
    input: a.input_tokens,
    output: a.output_tokens,
    cacheRead: a.cache_read_tokens,
    cacheWrite: a.cache_write_tokens,
  });

  it('tokens: input + cache write + output, not cache reads; dollars: every kind at its own price', () => {
    const price = defaultPrices['claude-haiku-5-5']!;
    const uncached = { input: 5_000, output: 300, cacheRead: 0, cacheWrite: 0 };
    const written = { input: 300, output: 300, cacheRead: 0, cacheWrite: 4_700 };
    const read = { input: 300, output: 300, cacheRead: 4_700, cacheWrite: 0 };
    expect([uncached, written, read].map(budgetTokens)).toEqual([5_300, 5_300, 600]);
    // $1 in, $5 out, $1.25 write, $0.10 read per MTok: 0.0065, 0.007675, 0.00227.
    expect([uncached, written, read].map((u) => settledAmount(price, u).microUsd)).toEqual([6_500, 7_675, 2_270]);
    expect(settledAmount(price, read, { batch: true })).toEqual({ tokens: 600, microUsd: 1_135 });
    // The reservation (a cache miss at the dearest input-side price) covers every way the call can settle.
    const reserved = toMicroUsd(maxCostUsd(price, 5_000, 300));
    for (const u of [uncached, written, read]) expect(settledAmount(price, u).microUsd).toBeLessThanOrEqual(reserved);
  });

  it('a call that reads the cached prefix settles to fewer budget tokens than the uncached call of the same prompt, and still pays for its reads', async () => {
    const store = new InMemoryBudgetStore();
    const { llm, audits, clock, fake } = await harness({
      budgets: { default: { tokensPerHour: 1_000_000, usdPerHour: 1 } },
      budgetStore: store,
    });
    const bucket = { agent: 'price-move', hourStartMs: hourStart(clock.now()) };
    const deltas: Array<{ tokens: number; microUsd: number }> = [];
    for (let i = 0; i < 2; i++) {
      const before = await store.usage(bucket);
      expect((await llm.analyzeFinding(finding())).model).not.toBe('rules-only');
      const after = await store.usage(bucket);
      deltas.push({ tokens: after.tokens - before.tokens, microUsd: after.microUsd - before.microUsd });
    }
    const [first, second] = audits;
    // One prompt, sent twice: the first call writes the rule book to the cache, the second reads it.
    expect(audits.map((a) => a.outcome)).toEqual(['ok', 'ok']);
    expect(first!.prompt_hash).toBe(second!.prompt_hash);
    expect(first!.cache_write_tokens).toBeGreaterThan(0);
    expect(second!.cache_read_tokens).toBe(first!.cache_write_tokens);
    expect(messagesCalls(fake)).toHaveLength(2);

    const price = llm.priceOf('claude-haiku-5-5')!;
    expect(deltas[0]!.tokens).toBe(first!.input_tokens + first!.cache_write_tokens + first!.output_tokens);
    expect(deltas[1]!.tokens).toBe(second!.input_tokens + second!.output_tokens);
    expect(deltas[1]!.tokens).toBeLessThan(deltas[0]!.tokens - second!.cache_read_tokens / 2);
    // The dollar side counts the reads, at the read price.
    expect(deltas[1]!.microUsd).toBe(toMicroUsd(costUsd(price, tokensOf(second!))));
    expect(deltas[1]!.microUsd).toBeGreaterThan(toMicroUsd(costUsd(price, { ...tokensOf(second!), cacheRead: 0 })));
    expect(deltas[0]!.microUsd).toBe(toMicroUsd(costUsd(price, tokensOf(first!))));
  });

  it('with no prompt cache, the same call counts its whole prompt', async () => {
    const store = new InMemoryBudgetStore();
    const { llm, audits, clock } = await harness(
      { budgets: { default: { tokensPerHour: 1_000_000 } }, budgetStore: store },
      { minCacheableTokens: () => Number.MAX_SAFE_INTEGER },
    );
    await llm.analyzeFinding(finding());
    await llm.analyzeFinding(finding());
    expect(audits.map((a) => [a.cache_read_tokens, a.cache_write_tokens])).toEqual([
      [0, 0],
      [0, 0],
    ]);
    const used = await store.usage({ agent: 'price-move', hourStartMs: hourStart(clock.now()) });
    expect(used.tokens).toBe(audits.reduce((n, a) => n + a.input_tokens + a.output_tokens, 0));
  });
});
