import { join } from 'node:path';
import type { Redis } from 'ioredis';
import type { KafkaPort } from '../../runtime/kafka/port.ts';
import { describe, expect, it } from 'vitest';
import { loadSchemas, type Outgoing, type TopicOf } from '../../runtime/index.ts';
import { TopologyTestDriver } from '../../runtime/testing/index.ts';
import { writeTable } from '../../runtime/state/tables.ts';
import { marketSignals, marketTopics, type MarketEvents } from '../../topologies/market-signals.ts';
import type { Finding } from '../../processors/finding.ts';
import {
  portfolioProblems,
  portfolios as portfoliosTable,
  type Portfolio,
} from '../../processors/portfolio-exposure.ts';
import { PriceTickType, TradeType } from '../../schemas/generated/types.ts';
import { defaultPriceMoveOptions } from '../../processors/price-move.ts';

const schemas = loadSchemas(join(import.meta.dirname, '../../schemas'));
const T0 = Date.UTC(2026, 0, 5, 14, 30);
const t = marketTopics({ application: 'm' });

const portfolio = (portfolioId: string, moveThresholdScale: number, weight = 0.05): Portfolio => ({
  portfolioId,
  name: portfolioId,
  holdings: [{ symbol: 'ACME', weight }],
  raiseAtWeight: 0.1,
  moveThresholdScale,
  alertAt: 'high',
});

const tick = (second: number, price: number): Outgoing<MarketEvents> => ({
  key: 'ACME',
  recordType: PriceTickType,
  value: { symbol: 'ACME', eventTime: T0 + second * 1000, price, bid: null, ask: null, currency: 'USD', venue: 'X' },
});

/**
 * ACME flat at 100 for two minutes, then rising steadily to 100 × (1 + `move`) over the next two: the two-minute
 * return ends at `move`, while no single tick jumps far enough to be a gap.
 */
function run(portfolios: Portfolio[], move: number): { market: Finding[]; byPortfolio: Map<string, Finding[]> } {
  const d = new TopologyTestDriver(marketSignals({ application: 'm' }), schemas, {
    services: { analysis: () => new Map() },
  });
  d.setTable(portfoliosTable, portfolios);
  for (let s = 0; s <= 120; s += 5) d.pipe(t.events, tick(s, 100));
  for (let s = 125; s <= 240; s += 5) d.pipe(t.events, tick(s, 100 * (1 + (move * (s - 120)) / 120)));
  const priceMoves = (topic: TopicOf<Finding>) =>
    d
      .readOutput(topic)
      .map((r) => r.value)
      .filter((f) => f.agent === 'price-move');
  const byPortfolio = new Map<string, Finding[]>();
  for (const f of priceMoves(t.portfolioFindings))
    byPortfolio.set(f.portfolioId, [...(byPortfolio.get(f.portfolioId) ?? []), f]);
  return { market: priceMoves(t.findings), byPortfolio };
}

const severities = (findings: Finding[] | undefined, rule: string) =>
  (findings ?? []).filter((f) => f.rule === rule).map((f) => f.severity);

describe('per-portfolio price-move thresholds', () => {
  it('grades the same 3% two-minute move medium by default, high at scale 0.6, and not at all at scale 2', () => {
    const { market, byPortfolio } = run(
      [portfolio('plain', 1), portfolio('sensitive', 0.6), portfolio('relaxed', 2)],
      0.031,
    );
    expect(severities(byPortfolio.get('plain'), 'move-2m')).toEqual(['medium']);
    // Reported first when it crossed the sensitive medium (1.8%), again when it crossed the sensitive high (3%).
    expect(severities(byPortfolio.get('sensitive'), 'move-2m')).toEqual(['medium', 'high']);
    expect(byPortfolio.has('relaxed')).toBe(false);
    // Market-wide, the move keeps its global grade: low (past a scaled threshold only), then medium.
    expect(severities(market, 'move-2m')).toEqual(['low', 'medium']);
    const last = market.filter((f) => f.rule === 'move-2m').at(-1)!;
    const { medium, high, critical } = defaultPriceMoveOptions.lookbacks.find((l) => l.name === '2m')!;
    expect(last.evidence).toMatchObject({ medium, high, critical, thresholdScale: 0.6 });
    const sensitive = byPortfolio
      .get('sensitive')!
      .filter((f) => f.rule === 'move-2m')
      .at(-1)!;
    expect(sensitive.evidence.thresholdScale).toBe(0.6);
    expect(sensitive.summary).toContain('thresholds ×0.6');
  });

  it('reports a move below every global threshold to the sensitive portfolio only', () => {
    const { market, byPortfolio } = run([portfolio('plain', 1), portfolio('sensitive', 0.6)], 0.025);
    expect(market.length).toBeGreaterThan(0);
    expect(market.every((f) => f.severity === 'low' && f.portfolioId === '')).toBe(true);
    expect([...byPortfolio.keys()]).toEqual(['sensitive']);
    expect(severities(byPortfolio.get('sensitive'), 'move-2m')).toEqual(['medium']);
  });

  it('reports an escalation for the sensitive portfolio while the market-wide severity stays the same', () => {
    // 4.9% in two minutes: medium globally (high is 5%), critical at scale 0.6 (4.8%).
    const { market, byPortfolio } = run([portfolio('plain', 1), portfolio('sensitive', 0.6)], 0.049);
    expect(severities(byPortfolio.get('sensitive'), 'move-2m')).toEqual(['medium', 'high', 'critical']);
    expect(severities(market, 'move-2m')).toEqual(['low', 'medium', 'medium']);
    // price-move reported the finding again (for the sensitive portfolio); the plain portfolio, whose grade did not
    // rise, hears of it once: no second alert, no second LLM call.
    const plain = byPortfolio.get('plain')!.filter((f) => f.rule === 'move-2m');
    expect(plain.map((f) => f.severity)).toEqual(['medium']);
  });

  it('reports a market-wide escalation while the sensitive portfolio stays at the same grade', () => {
    // 5.2% in two minutes at scale 0.75: the sensitive grade is high from 3.75% on (critical needs 6%), while the
    // global grade rises from medium to high at 5%; the plain portfolio must still see that high.
    const { market, byPortfolio } = run([portfolio('plain', 1), portfolio('sensitive', 0.75)], 0.052);
    expect(severities(market, 'move-2m')).toEqual(['low', 'medium', 'medium', 'high']);
    expect(severities(byPortfolio.get('plain'), 'move-2m')).toEqual(['medium', 'high']);
    expect(severities(byPortfolio.get('sensitive'), 'move-2m')).toEqual(['medium', 'high']);
  });

  it('keeps market-wide findings as they were when no holder is more sensitive than the global thresholds', () => {
    const baseline = run([], 0.031).market;
    const relaxed = run([portfolio('relaxed', 2), portfolio('calm', 1.5)], 0.031).market;
    expect(relaxed.map((f) => [f.rule, f.severity])).toEqual(baseline.map((f) => [f.rule, f.severity]));
    expect(severities(baseline, 'move-2m')).toEqual(['medium']);
  });

  it('still raises a heavy holding one level on top of its own grade', () => {
    const { byPortfolio } = run(
      [portfolio('plain', 1, 0.2), portfolio('sensitive', 0.6, 0.2), portfolio('relaxed', 2, 0.2)],
      0.031,
    );
    expect(severities(byPortfolio.get('plain'), 'move-2m')).toEqual(['high']);
    expect(severities(byPortfolio.get('sensitive'), 'move-2m')).toEqual(['high', 'critical']);
    expect(byPortfolio.has('relaxed')).toBe(false);
    expect(byPortfolio.get('sensitive')!.at(-1)!.summary).toContain('raised for exposure');
  });

  it('treats a row loaded before the field existed as scale 1', () => {
    const { moveThresholdScale: _dropped, ...legacy } = portfolio('legacy', 1);
    const { byPortfolio } = run([legacy as Portfolio], 0.031);
    expect(severities(byPortfolio.get('legacy'), 'move-2m')).toEqual(['medium']);
  });

  it('leaves findings of other agents to every holder at their own severity', () => {
    const d = new TopologyTestDriver(marketSignals({ application: 'm' }), schemas, {
      services: { analysis: () => new Map() },
    });
    d.setTable(portfoliosTable, [portfolio('relaxed', 2), portfolio('sensitive', 0.5)]);
    let id = 0;
    for (let minute = 0; minute < 10; minute += 1) {
      for (let i = 0; i < 10; i += 1) {
        d.pipe(t.events, {
          key: 'ACME',
          recordType: TradeType,
          value: {
            symbol: 'ACME',
            eventTime: T0 + (minute * 60 + i * 5) * 1000,
            price: 10,
            quantity: minute === 8 ? 600 : 100,
            side: 'BUY',
            tradeId: `t${id++}`,
          },
        });
      }
    }
    const spikes = d
      .readOutput(t.portfolioFindings)
      .map((r) => r.value)
      .filter((f) => f.agent === 'volume-spike');
    expect(spikes.map((f) => [f.portfolioId, f.severity]).sort()).toEqual([
      ['relaxed', 'high'],
      ['sensitive', 'high'],
    ]);
  });
});

describe('moveThresholdScale validation', () => {
  it('accepts a finite scale above zero and names the problem otherwise', () => {
    expect(portfolioProblems(portfolio('a', 1))).toEqual([]);
    expect(portfolioProblems(portfolio('a', 0.5))).toEqual([]);
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(portfolioProblems(portfolio('a', bad))).toEqual([
        expect.stringContaining(`moveThresholdScale must be a finite number > 0`),
      ]);
    }
  });

  it('makes `table load` refuse the whole file before anything is written', async () => {
    const untouched = new Proxy(
      {},
      {
        get: (_, name) => {
          throw new Error(`Redis was used (${String(name)})`);
        },
      },
    ) as unknown as Redis;
    const rows = [portfolio('good', 0.75), portfolio('bad', 0), portfolio('worse', -2)];
    const error = await writeTable(
      untouched,
      untouched as unknown as KafkaPort,
      marketSignals({ application: 'm' }),
      'portfolios',
      rows,
      schemas,
    ).then(
      () => new Error('writeTable accepted the rows'),
      (e: unknown) => e as Error,
    );
    expect(error.message).toContain('Table "portfolios" was not changed');
    expect(error.message).toContain('row 2 (bad): moveThresholdScale must be a finite number > 0');
    expect(error.message).toContain('row 3 (worse): moveThresholdScale must be a finite number > 0');
    expect(error.message).not.toContain('Redis was used');
  });
});
