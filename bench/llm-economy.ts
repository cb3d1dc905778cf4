/**
 * What the fleet's LLM analysis costs, before and after the rule book became a cacheable prefix: a steady stream of
 * alerts through the real SDK and the runtime's LLM service (prices from runtime/llm/models.ts) against the Anthropic
 * stand-in (test/fakes/anthropic.ts), which caches a prefix only at or above the model's minimum cacheable length
 * and expires entries 5 minutes (or, asked for, an hour) after their last use, like the API. The cached prefix runs
 * with each cache TTL setting of the service (`cacheTtl`: 5m, 1h, auto). No broker is needed.
 *
 *   npx tsx bench/llm-economy.ts [--alerts 1000] [--gaps 20,120,400,1200] [--critical-share 0.25] [--hours 24]
 *
 * For each inter-arrival gap (seconds of the stand-in's clock between alerts) it reports the cache-read share of the
 * analyst's input tokens in steady state (every call after the first per model) and overall, and the cost per 1,000
 * alerts; and the cost per digest (one Message Batch per hour holding the three portfolios' digests). Token counts
 * are the stand-in's (characters / 4); replies are a fixed 600-character analysis (~120 output tokens), the same
 * before and after, so the difference is the prompt's.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createLlm, type CacheTtlSetting, type LlmCallRecord } from '../runtime/llm/index.ts';
import { retry } from '../runtime/retry.ts';
import { createAnalyst, type AnalystOptions } from '../processors/analysis/analyst.ts';
import { ANALYSIS_SYSTEM_PROMPT, DEFAULT_RULES_TEXT } from '../processors/analysis/prompts.ts';
import { portfolioBook } from '../processors/analysis/rule-book.ts';
import { defaultModelTiers } from '../processors/analysis/tiers.ts';
import type { Severity } from '../processors/finding.ts';
import type { Portfolio } from '../processors/portfolio-exposure.ts';
import { fakeTokens, lastUserText, startAnthropicFake, type Responder } from '../test/fakes/anthropic.ts';

const { values: opts } = parseArgs({
  options: {
    alerts: { type: 'string', default: '1000' },
    gaps: { type: 'string', default: '20,120,400,1200' },
    'critical-share': { type: 'string', default: '0.25' },
    hours: { type: 'string', default: '24' },
  },
});
const ALERTS = Number(opts.alerts);
const GAPS_S = opts.gaps.split(',').map(Number);
const CRITICAL_SHARE = Number(opts['critical-share']);
const HOURS = Number(opts.hours);
for (const [name, value] of [
  ['--alerts', ALERTS],
  ['--hours', HOURS],
  ...GAPS_S.map((g) => ['--gaps', g] as const),
] as const) {
  if (!(Number.isFinite(value) && value > 0)) throw new Error(`${name} must be a number > 0, got ${value}`);
}
if (!(CRITICAL_SHARE >= 0 && CRITICAL_SHARE <= 1)) throw new Error('--critical-share must be from 0 to 1');

const portfolios = JSON.parse(
  readFileSync(join(import.meta.dirname, '../topologies/portfolios.json'), 'utf8'),
) as Portfolio[];

/** The rule book as it was before this change (commit b02ffa4): about 540 tokens of prefix with the system prompt. */
const BEFORE_RULES_TEXT = `Severity scale, lowest to highest: info, low, medium, high, critical. A rule sets the severity from its evidence; the analysis explains it and may suggest a lower severity, never a higher one.

Agents and their rules:
- price-move: the price moved more than a threshold within a window; evidence: change (fraction), from, to.
- volatility: realised volatility over a window exceeds a multiple of its baseline; evidence: volatility, baseline.
- volume-spike: traded volume in a window exceeds a multiple of its moving average; evidence: volume, average, ratio.
- news: a headline about the instrument matched a watched topic; evidence: sentiment score, source count. The headline and body are third-party text.
- filings: a regulatory filing (8-K items, insider transactions, guidance) was published; evidence: item codes.
- portfolio-exposure: a position's weight or loss crossed the portfolio's limit; evidence: weight, limit, unrealised P&L.

Recommended actions are concrete and proportionate: review, hedge, trim, resize risk, confirm with a second source. Never recommend trading on unverified third-party text alone.`;

const variants: Array<{ name: string; options: AnalystOptions; cacheTtl: CacheTtlSetting }> = [
  { name: 'before', options: { rulesText: BEFORE_RULES_TEXT, digestRulesText: BEFORE_RULES_TEXT }, cacheTtl: '5m' },
  { name: 'after, TTL 5m', options: { portfolios }, cacheTtl: '5m' },
  { name: 'after, TTL 1h', options: { portfolios }, cacheTtl: '1h' },
  { name: 'after, TTL auto', options: { portfolios }, cacheTtl: 'auto' },
];

/** A realistic-length reply: a ~600-character analysis, or a digest. */
const responder: Responder = (request) => {
  const text = lastUserText(request);
  if (/^Hour: /m.test(text))
    return JSON.stringify({ summary: `Digest: ${'the hour brought several findings on held symbols. '.repeat(8)}` });
  return JSON.stringify({
    summary: `The finding crossed its rule's threshold on a held symbol. ${'It matters for the portfolio because of its weight. '.repeat(6)}`,
    recommended_action: 'Review the position against the evidence and confirm the cause with a second source.',
    severity: 'high',
    confidence: 0.7,
  });
};

const agents = ['price-move', 'volatility', 'volume-spike', 'news', 'filings'] as const;
const symbols = ['ACME', 'BOLT', 'CRUX', 'DYNA', 'ECHO', 'FLUX', 'GRID', 'HALO'];

interface Totals {
  rows: LlmCallRecord[];
}

async function run(variant: AnalystOptions, cacheTtl: CacheTtlSetting, gapMs: number): Promise<Totals> {
  let now = Date.UTC(2026, 0, 5, 10, 0, 0);
  const clock = (): number => now;
  const fake = await startAnthropicFake({ responder, now: clock, batchPollsToComplete: 1 });
  const rows: LlmCallRecord[] = [];
  const llm = createLlm({
    apiKey: 'sk-ant-bench',
    baseUrl: fake.url,
    budgets: { default: { tokensPerHour: 1_000_000_000 } },
    models: [defaultModelTiers.triage, defaultModelTiers.strong],
    onAudit: (row) => void rows.push(row),
    log: () => {},
    now: clock,
    cacheTtl,
    batches: { pollPolicy: retry({ initialMs: 1, maxMs: 1, factor: 1, jitter: 0 }) },
    sleep: async () => {},
  });
  const analyst = createAnalyst(llm, variant);
  try {
    for (let i = 0; i < ALERTS; i += 1) {
      // Critical alerts spread evenly through the stream at the requested share.
      const critical = Math.floor((i + 1) * CRITICAL_SHARE) > Math.floor(i * CRITICAL_SHARE);
      const severity: Severity = critical ? 'critical' : 'high';
      const agent = agents[i % agents.length]!;
      const symbol = symbols[i % symbols.length]!;
      await analyst.analyzeFinding(
        {
          id: `finding-${i}`,
          agent,
          rule: `${agent}-rule`,
          symbol,
          severity,
          evidence: { return: -0.045, weight: 0.18, impact: -0.0081, medium: 0.02, high: 0.04, critical: 0.07 },
          summary: `${symbol} fell 4.5% in 1m (18.0% of Growth, raised for exposure)`,
        },
        { portfolioName: 'Growth' },
      );
      now += gapMs;
    }
    const hourStart = Date.UTC(2026, 0, 5, 9);
    for (let h = 0; h < HOURS; h += 1) {
      await analyst.summarizeDigests(
        portfolios.map((p, j) => ({
          id: `d-${h}-${j}`,
          portfolioName: p.name,
          hourStart: hourStart + h * 3_600_000,
          findingCount: 12,
          bySeverity: { critical: 1, high: 3, medium: 8 },
          topFindings: [
            `${p.holdings[0]!.symbol} fell 4.5% in 1m (raised for exposure)`,
            `${p.holdings[1]!.symbol} traded 6.2× its usual volume in one minute`,
            `4 negative stories on ${p.holdings[0]!.symbol} within 10 minutes`,
          ],
        })),
      );
      now += 3_600_000;
    }
  } finally {
    llm.close();
    await fake.close();
  }
  return { rows };
}

function summarise(rows: LlmCallRecord[]): { share: number; steadyShare: number; costPerAlert: number } {
  const ok = rows.filter((r) => r.outcome === 'ok');
  const firsts = new Set(
    [defaultModelTiers.triage, defaultModelTiers.strong].map((m) => ok.find((r) => r.model === m)),
  );
  const share = (list: LlmCallRecord[]): number => {
    const input = list.reduce((n, r) => n + r.input_tokens + r.cache_read_tokens + r.cache_write_tokens, 0);
    return input === 0 ? 0 : list.reduce((n, r) => n + r.cache_read_tokens, 0) / input;
  };
  return {
    share: share(ok),
    steadyShare: share(ok.filter((r) => !firsts.has(r))),
    costPerAlert: ok.reduce((n, r) => n + r.cost_usd, 0) / ok.length,
  };
}

const usd = (x: number, digits = 4): string => `$${x.toFixed(digits)}`;
const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;

const analysisPrefix = (rules: string): number => fakeTokens(ANALYSIS_SYSTEM_PROMPT) + fakeTokens(rules);
console.log(
  `prefix (stand-in tokens): before ${analysisPrefix(BEFORE_RULES_TEXT)}, after ${analysisPrefix(`${DEFAULT_RULES_TEXT}\n\n${portfolioBook(portfolios)}`)}; ` +
    `models ${defaultModelTiers.triage} (triage) and ${defaultModelTiers.strong} (strong, ${pct(CRITICAL_SHARE)} of alerts)`,
);
console.log(
  '| gap between alerts | variant | cache reads, steady state | cache reads, overall | $ per 1,000 alerts | $ per digest |',
);
console.log('|---|---|---|---|---|---|');
for (const gapS of GAPS_S) {
  for (const variant of variants) {
    const { rows } = await run(variant.options, variant.cacheTtl, gapS * 1000);
    const alerts = rows.filter((r) => r.agent !== 'digest');
    const digests = rows.filter((r) => r.agent === 'digest' && r.outcome === 'ok');
    const a = summarise(alerts);
    const perDigest = digests.reduce((n, r) => n + r.cost_usd, 0) / digests.length;
    console.log(
      `| ${gapS} s | ${variant.name} | ${pct(a.steadyShare)} | ${pct(a.share)} | ${usd(a.costPerAlert * 1000, 2)} | ${usd(perDigest, 5)} |`,
    );
  }
}
