/**
 * The volatility agent through the market-signals topology (router included), on seeded price paths whose
 * volatility is known, and on the synthetic feed with a planted volatility burst.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TopologyTestDriver } from '../../runtime/testing/index.ts';
import { loadSchemas } from '../../runtime/index.ts';
import { deadLetterHeader } from '../../runtime/engine/dead-letter.ts';
import { marketSignals } from '../../topologies/market-signals.ts';
import { findingId, severityRank, type Finding } from '../../processors/finding.ts';
import { TRADING_YEAR_MS } from '../../processors/volatility.ts';
import { marketFeed, type FeedEvent } from '../../connectors/synthetic-feed.ts';

const schemas = loadSchemas(join(import.meta.dirname, '../../schemas'));
const T0 = Date.UTC(2026, 0, 5, 14, 30);
const MINUTE = 60_000;

function driver(): TopologyTestDriver {
  return new TopologyTestDriver(marketSignals({ application: 'm' }), schemas, {
    services: { analysis: () => new Map() },
  });
}

const tick = (symbol: string, time: number, price: number) => ({
  key: symbol,
  recordType: 'agentstreams.market.PriceTick',
  value: { symbol, eventTime: time, price, bid: null, ask: null, currency: 'USD', venue: 'X' },
});

/** A stretch of a price path: annualised volatility and a drift in log price per minute. */
interface Segment {
  minutes: number;
  volatility: number;
  driftPerMinute?: number;
}

/** mulberry32 with Box–Muller: the same seed always gives the same path. */
function normals(seed: number): () => number {
  let state = seed >>> 0;
  const uniform = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

/** One tick a second along the segments, from T0 (or `from`), as geometric Brownian motion. */
function path(
  symbol: string,
  segments: Segment[],
  options: { seed: number; price?: number; from?: number },
): Array<ReturnType<typeof tick>> {
  const normal = normals(options.seed);
  const ticks: Array<ReturnType<typeof tick>> = [];
  let logPrice = Math.log(options.price ?? 100);
  let time = options.from ?? T0;
  for (const segment of segments) {
    for (let s = 0; s < segment.minutes * 60; s += 1) {
      logPrice +=
        (segment.driftPerMinute ?? 0) / 60 + segment.volatility * Math.sqrt(1000 / TRADING_YEAR_MS) * normal();
      ticks.push(tick(symbol, time, Math.exp(logPrice)));
      time += 1000;
    }
  }
  return ticks;
}

function volatilityFindings(d: TopologyTestDriver, symbol?: string): Finding[] {
  return d
    .readOutput<Finding>('m.findings')
    .map((f) => f.value)
    .filter((f) => f.agent === 'volatility' && (symbol === undefined || f.symbol === symbol));
}

const ranks = (findings: Finding[]): number[] => findings.map((f) => severityRank(f.severity));
const strictlyIncreasing = (values: number[]): boolean => values.every((v, i) => i === 0 || v > values[i - 1]!);

describe('volatility', () => {
  it('reports a 4× volatility burst after a calm stretch as one episode that reaches critical', () => {
    const d = driver();
    for (const t of path(
      'WILD',
      [
        { minutes: 15, volatility: 0.3 },
        { minutes: 2, volatility: 1.2 },
        { minutes: 5, volatility: 0.3 },
      ],
      { seed: 1 },
    ))
      d.pipe('market.events', t);
    const burstStart = T0 + 15 * MINUTE;
    const findings = volatilityFindings(d);
    expect(findings.length).toBeGreaterThan(0);
    expect(findings.every((f) => f.symbol === 'WILD' && f.rule === 'volatility-z')).toBe(true);
    // One episode: one id, raised only as it got worse, and nothing before the burst or after it calmed down.
    expect(new Set(findings.map((f) => f.findingId)).size).toBe(1);
    expect(strictlyIncreasing(ranks(findings))).toBe(true);
    expect(findings.at(-1)!.severity).toBe('critical');
    expect(findings[0]!.eventTime).toBeGreaterThanOrEqual(burstStart);
    expect(findings.at(-1)!.eventTime).toBeLessThan(burstStart + 2 * MINUTE);
    // The episode's window starts at the first window that showed it, which overlaps the burst's start.
    expect(findings[0]!.windowStart).toBeGreaterThan(burstStart - MINUTE);
    expect(findings[0]!.windowStart).toBeLessThanOrEqual(burstStart);
    expect(findings[0]!.findingId).toBe(findingId('volatility', 'volatility-z', 'WILD', '', findings[0]!.windowStart));
    const evidence = findings.at(-1)!.evidence;
    expect(evidence.zScore).toBeGreaterThanOrEqual(6);
    expect(evidence.ratio).toBeGreaterThan(2.5);
    // The baseline is the calm stretch's 30% (measured, so within sampling error); the window is the burst's 120%.
    expect(evidence.baselineVolatilityAnnualised).toBeGreaterThan(0.25);
    expect(evidence.baselineVolatilityAnnualised).toBeLessThan(0.35);
    expect(evidence.volatilityAnnualised).toBeGreaterThan(0.75);
    expect(evidence).toMatchObject({ windowMs: 60_000, bucketMs: 5_000 });
  });

  it('stays silent on a calm series it has long been judging', () => {
    const d = driver();
    for (const t of path('CALM', [{ minutes: 30, volatility: 0.3 }], { seed: 2 })) d.pipe('market.events', t);
    expect(volatilityFindings(d)).toEqual([]);
    // Judged, not merely warming up: 25 minutes of closed buckets went into the baseline.
    expect(d.stateOf<{ count: number }>('volatility', 'volatility', 'CALM')!.count).toBeGreaterThan(300);
  });

  it('does not take a steady trend for volatility, even one steep enough for price-move', () => {
    const d = driver();
    // Calm, then the same noise on a trend that builds to 1% a minute and holds; and a trend with no noise at all.
    const ramp = Array.from({ length: 10 }, (_, i) => ({
      minutes: 0.5,
      volatility: 0.3,
      driftPerMinute: (i + 1) * 0.001,
    }));
    for (const t of path(
      'TRND',
      [{ minutes: 10, volatility: 0.3 }, ...ramp, { minutes: 5, volatility: 0.3, driftPerMinute: 0.01 }],
      { seed: 3 },
    ))
      d.pipe('market.events', t);
    for (const t of path('SMTH', [{ minutes: 20, volatility: 0, driftPerMinute: 0.002 }], { seed: 4 }))
      d.pipe('market.events', t);
    expect(volatilityFindings(d)).toEqual([]);
    const all = d.readOutput<Finding>('m.findings').map((f) => f.value);
    expect(all.some((f) => f.agent === 'price-move' && f.symbol === 'TRND')).toBe(true);
    expect(d.stateOf<{ count: number }>('volatility', 'volatility', 'TRND')!.count).toBeGreaterThan(200);
  });

  it('reports a burst that persists for ten minutes once, and ends the episode when it calms down', () => {
    const d = driver();
    const calm = path('LONG', [{ minutes: 15, volatility: 0.3 }], { seed: 5 });
    const burst = path('LONG', [{ minutes: 10, volatility: 0.9 }], {
      seed: 10,
      from: T0 + 15 * MINUTE,
      price: calm.at(-1)!.value.price,
    });
    const after = path('LONG', [{ minutes: 5, volatility: 0.3 }], {
      seed: 11,
      from: T0 + 25 * MINUTE,
      price: burst.at(-1)!.value.price,
    });
    for (const t of [...calm, ...burst]) d.pipe('market.events', t);
    const during = volatilityFindings(d);
    expect(during.length).toBeGreaterThan(0);
    expect(during.length).toBeLessThanOrEqual(3);
    expect(new Set(during.map((f) => f.findingId)).size).toBe(1);
    expect(strictlyIncreasing(ranks(during))).toBe(true);
    // Still in the episode at the burst's end (so it persisted, unreported), and over once it is calm again.
    expect(d.stateOf<{ firing?: unknown }>('volatility', 'volatility', 'LONG')!.firing).toBeDefined();
    for (const t of after) d.pipe('market.events', t);
    expect(volatilityFindings(d)).toEqual(during);
    expect(d.stateOf<{ firing?: unknown }>('volatility', 'volatility', 'LONG')!.firing).toBeUndefined();
  });

  it('reports an escalating burst again at each higher severity, under the same finding id', () => {
    const d = driver();
    const segments = [
      { minutes: 15, volatility: 0.3 },
      { minutes: 2, volatility: 0.55 },
      { minutes: 2, volatility: 0.8 },
      { minutes: 2, volatility: 1.5 },
      { minutes: 3, volatility: 0.3 },
    ];
    for (const t of path('RISE', segments, { seed: 8 })) d.pipe('market.events', t);
    const findings = volatilityFindings(d, 'RISE');
    expect(findings.length).toBeGreaterThanOrEqual(2);
    expect(strictlyIncreasing(ranks(findings))).toBe(true);
    expect(findings[0]!.severity).not.toBe('critical');
    expect(findings.at(-1)!.severity).toBe('critical');
    // First reported before the steepest stretch began, then raised during it.
    expect(findings[0]!.eventTime).toBeLessThan(T0 + 19 * MINUTE);
    expect(findings.at(-1)!.eventTime).toBeGreaterThanOrEqual(T0 + 19 * MINUTE);
    expect(new Set(findings.map((f) => f.findingId)).size).toBe(1);
    expect(new Set(findings.map((f) => f.windowStart)).size).toBe(1);
    expect(findings[1]!.evidence.zScore).toBeGreaterThan(findings[0]!.evidence.zScore!);
  });

  it('dead-letters a non-positive price and keeps judging the symbol afterwards', () => {
    const d = driver();
    const ticks = path('OOPS', [{ minutes: 6, volatility: 0.3 }], { seed: 9 });
    for (const t of ticks.slice(0, 300)) d.pipe('market.events', t);
    const before = d.stateOf<{ count: number }>('volatility', 'volatility', 'OOPS')!.count;
    d.pipe('market.events', tick('OOPS', T0 + 300_500, 0));
    const dead = d.readDeadLetters().filter((r) => r.headers[deadLetterHeader.processor] === 'volatility');
    expect(dead).toHaveLength(1);
    expect(dead[0]!.headers[deadLetterHeader.errorMessage]).toContain(
      'field price is 0, outside its documented range (> 0, finite)',
    ); // the schema's range rule, before the processor;
    for (const t of ticks.slice(300)) d.pipe('market.events', t);
    expect(d.stateOf<{ count: number }>('volatility', 'volatility', 'OOPS')!.count).toBeGreaterThan(before);
    expect(volatilityFindings(d)).toEqual([]);
  });

  it("finds the synthetic feed's planted volatility burst on its symbol, and nothing on the others", () => {
    const d = driver();
    const label = 'volatility:ACME:4x:3m@8m';
    for (const event of marketFeed({ seed: 7, symbols: 12, rate: 200, duration: '12m', scenarios: [label] }))
      d.pipe<FeedEvent['value']>('market.events', event);
    const findings = volatilityFindings(d);
    const burstStart = T0 + 8 * MINUTE;
    expect(findings.filter((f) => f.symbol !== 'ACME')).toEqual([]);
    expect(findings.some((f) => f.severity === 'high' || f.severity === 'critical')).toBe(true);
    expect(new Set(findings.map((f) => f.findingId)).size).toBe(1);
    expect(findings[0]!.eventTime).toBeGreaterThanOrEqual(burstStart);
    expect(findings.at(-1)!.eventTime).toBeLessThan(burstStart + 3 * MINUTE);
  });
});
