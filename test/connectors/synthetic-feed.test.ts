/**
 * The synthetic feed: deterministic given a seed, realistic enough to be valid and varied, with planted scenarios
 * that are really in the data (generator level, no Kafka); then one run through the real Kafka and registry.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  headlineTemplates,
  marketFeed,
  parseScenario,
  planFeed,
  runFeed,
  DEFAULT_FEED_START,
  type FeedEvent,
} from '../../connectors/synthetic-feed.ts';
import { MarketRecord, MarketSchemas, keysOf } from '../../connectors/market-records.ts';
import { AgentStreamsError, ErrorCode } from '../../runtime/errors.ts';
import type { PriceTick, Trade } from '../../schemas/generated/types.ts';
import { loadSchemas } from '../../runtime/serde/schemas.ts';
import { TopologyTestDriver } from '../../runtime/testing/driver.ts';
import { marketSignals } from '../../topologies/market-signals.ts';
import { config, kafkaClient, uniqueName } from '../support/stack.ts';
import { readTopic } from './read-topic.ts';

const MINUTE = 60_000;
const ticks = (events: FeedEvent[], symbol: string): Array<FeedEvent & { type: 'PriceTick' }> =>
  events.filter((e): e is FeedEvent & { type: 'PriceTick' } => e.type === 'PriceTick' && e.key === symbol);
const trades = (events: FeedEvent[], symbol: string): Array<FeedEvent & { type: 'Trade' }> =>
  events.filter((e): e is FeedEvent & { type: 'Trade' } => e.type === 'Trade' && e.key === symbol);

describe('synthetic feed generator (no Kafka)', () => {
  it('gives the same events for the same seed and options, and different ones for another seed', () => {
    const options = { seed: 42, rate: 2000, duration: '30s', symbols: 20, newsPerMinute: 20, filingsPerHour: 600 };
    const a = [...marketFeed(options)];
    const b = [...marketFeed(options)];
    const c = [...marketFeed({ ...options, seed: 43 })];
    expect(a.length).toBeGreaterThanOrEqual(60_000);
    expect(b).toEqual(a);
    expect(c.slice(0, 100)).not.toEqual(a.slice(0, 100));
    // All four record types appear, event time never goes backwards, and the clock advances with the rate.
    expect(new Set(a.map((e) => e.type))).toEqual(new Set(['PriceTick', 'Trade', 'NewsItem', 'Filing']));
    for (let i = 1; i < a.length; i += 1) expect(a[i]!.timestamp).toBeGreaterThanOrEqual(a[i - 1]!.timestamp);
    expect(a[0]!.timestamp).toBe(DEFAULT_FEED_START);
    expect(a.at(-1)!.timestamp).toBe(DEFAULT_FEED_START + 30_000 - 1);
  });

  it('produces only schema-valid records, keyed by their symbol, over the configured universe', () => {
    const schemas = new MarketSchemas();
    const events = [
      ...marketFeed({ seed: 5, rate: 500, duration: '2m', symbols: 50, newsPerMinute: 10, filingsPerHour: 300 }),
    ];
    const symbols = new Set<string>();
    const wrong: string[] = [];
    for (const e of events) {
      const problems = schemas.validate(e.type, e.value);
      if (problems.length > 0) wrong.push(`${JSON.stringify(e.value)}: ${JSON.stringify(problems)}`);
      if (
        e.recordType !== MarketRecord[e.type] ||
        !keysOf(e.type, e.value).includes(e.key) ||
        e.value.eventTime !== e.timestamp
      )
        wrong.push(`envelope of ${JSON.stringify(e)}`);
      // Prices are positive and on the cent grid, with bid < ask.
      if (e.type === 'PriceTick') {
        const t: PriceTick = e.value;
        if (!(t.price > 0) || Math.abs(t.price * 100 - Math.round(t.price * 100)) > 1e-6 || !(t.bid! < t.ask!))
          wrong.push(`prices of ${JSON.stringify(t)}`);
      }
      symbols.add(e.key);
    }
    expect(wrong).toEqual([]);
    expect(symbols.size).toBe(50);
  });

  it('plants a drop that is really at least X% within the window, and keeps the rest of the market as it was', () => {
    const base = { seed: 11, rate: 200, duration: '6m' };
    const planted = [...marketFeed({ ...base, scenarios: ['drop:ACME:6%:2m@1m'] })];
    const label = 'drop:ACME:6%:2m@1m';
    const acme = ticks(planted, 'ACME');
    const inWindow = acme.filter((e) => e.scenario === label);
    const first = inWindow[0]!;
    const last = inWindow.at(-1)!;
    const from = DEFAULT_FEED_START + MINUTE;
    // Anchored at the first event at or after the offset, and ending 2 minutes later (within one slot of 5 ms).
    expect(first.timestamp).toBeGreaterThanOrEqual(from);
    expect(first.timestamp).toBeLessThan(from + 10);
    expect(last.timestamp - first.timestamp).toBeGreaterThanOrEqual(2 * MINUTE);
    expect(last.timestamp - first.timestamp).toBeLessThan(2 * MINUTE + 10);
    expect(last.value.price / first.value.price).toBeLessThanOrEqual(0.94);
    // Every ACME tick inside the window is labelled, and the fall sticks after it.
    expect(
      acme
        .filter((e) => e.timestamp > first.timestamp && e.timestamp < last.timestamp)
        .every((e) => e.scenario === label),
    ).toBe(true);
    const after = acme.filter((e) => e.timestamp > last.timestamp + 5_000 && e.timestamp < last.timestamp + MINUTE);
    expect(after.length).toBeGreaterThan(5);
    for (const e of after) expect(e.value.price / first.value.price).toBeLessThan(0.96);
    // The unplanted run of the same seed has no such move: the drop is the planted signal, not noise.
    const quiet = ticks([...marketFeed(base)], 'ACME').filter(
      (e) => e.timestamp >= first.timestamp && e.timestamp <= last.timestamp,
    );
    const prices = quiet.map((e) => e.value.price);
    expect(Math.min(...prices) / Math.max(...prices)).toBeGreaterThan(0.98);
    // Other symbols are untouched by the scenario.
    expect(ticks(planted, 'BOLT').length).toBeGreaterThan(0);
  });

  it('plants a volume spike: the symbol trades k times its size in the window and the same size outside it', () => {
    const base = { seed: 3, rate: 300, duration: '5m' };
    const label = 'volumeSpike:BOLT:5x:1m@2m';
    const spiked = trades([...marketFeed({ ...base, scenarios: [label] })], 'BOLT');
    const normal = trades([...marketFeed(base)], 'BOLT');
    // A volume spike adds no events, so the two runs line up trade for trade.
    expect(spiked.length).toBe(normal.length);
    const from = DEFAULT_FEED_START + 2 * MINUTE;
    let windowVolume = 0;
    let baselineVolume = 0;
    spiked.forEach((t, i) => {
      const n: Trade = normal[i]!.value;
      expect(t.timestamp).toBe(normal[i]!.timestamp);
      if (t.timestamp >= from && t.timestamp < from + MINUTE) {
        expect(t.scenario).toBe(label);
        expect(t.value.quantity).toBe(Math.round(n.quantity * 5));
        windowVolume += t.value.quantity;
      } else {
        expect(t.value.quantity).toBe(n.quantity);
        if (t.timestamp >= from - MINUTE && t.timestamp < from) baselineVolume += t.value.quantity;
      }
    });
    expect(windowVolume).toBeGreaterThan(2.5 * baselineVolume);
  });

  it('plants a volatility burst: about k times the return noise inside the window, and exactly the unplanted feed outside it', () => {
    // No news or filings: their text quotes the last price, which the burst changes.
    const base = { seed: 7, symbols: 12, rate: 200, duration: '8m', newsPerMinute: 0, filingsPerHour: 0 };
    const label = 'volatility:ACME:4x:3m@3m';
    const planted = [...marketFeed({ ...base, scenarios: [label] })];
    const plain = [...marketFeed(base)];
    const from = DEFAULT_FEED_START + 3 * MINUTE;
    const to = from + 3 * MINUTE;
    // A burst adds no events and draws from its own random stream: the two runs line up event for event, and only
    // ACME's prices inside the window differ (so the burst ends where the price would have been: no net move).
    expect(planted.length).toBe(plain.length);
    let changed = 0;
    planted.forEach((e, i) => {
      if (e.key === 'ACME' && e.timestamp >= from && e.timestamp < to) {
        expect(e.scenario).toBe(label);
        expect({ ...e, value: undefined, scenario: undefined }).toEqual({ ...plain[i]!, value: undefined });
        if (JSON.stringify(e.value) !== JSON.stringify(plain[i]!.value)) changed += 1;
      } else {
        expect(e).toEqual(plain[i]);
      }
    });
    expect(changed).toBeGreaterThan(500);
    // Realised volatility of 5 s returns in the window: about 4× the unplanted run's (tick noise dilutes it a little).
    const volatility = (events: FeedEvent[]): number => {
      const last = new Map<number, number>();
      for (const e of ticks(events, 'ACME'))
        if (e.timestamp >= from && e.timestamp < to) last.set(Math.floor(e.timestamp / 5000), e.value.price);
      const prices = [...last.values()];
      let squares = 0;
      for (let i = 1; i < prices.length; i += 1) squares += Math.log(prices[i]! / prices[i - 1]!) ** 2;
      return Math.sqrt(squares / (prices.length - 1));
    };
    const ratio = volatility(planted) / volatility(plain);
    expect(ratio).toBeGreaterThan(3);
    expect(ratio).toBeLessThan(5.5);
  });

  it('plants a burst of negative headlines and a filing with its items', () => {
    const events = [
      ...marketFeed({
        seed: 9,
        rate: 100,
        duration: '10m',
        newsPerMinute: 0,
        filingsPerHour: 0,
        scenarios: ['newsBurst:CRUX:5:1m@3m', 'filing:DYNA:8-K:2.02,5.02@4m', 'filing:ECHO:4@5m'],
      }),
    ];
    const news = events.filter((e) => e.type === 'NewsItem');
    expect(news).toHaveLength(5);
    const negative = headlineTemplates.negative.map((t) => t.replace('{name}', 'Crux Biotech'));
    for (const e of news) {
      expect(e.scenario).toBe('newsBurst:CRUX:5:1m@3m');
      expect(e.value.symbols).toEqual(['CRUX']);
      expect(negative).toContain(e.value.headline);
      expect(e.timestamp).toBeGreaterThanOrEqual(DEFAULT_FEED_START + 3 * MINUTE);
      expect(e.timestamp).toBeLessThan(DEFAULT_FEED_START + 4 * MINUTE);
    }
    // Five different stories (a repeated story would count once for the news agent), whatever the start time.
    expect(new Set(news.map((e) => e.value.headline)).size).toBe(5);
    const later = [
      ...marketFeed({
        seed: 9,
        rate: 100,
        duration: '10m',
        start: DEFAULT_FEED_START + 4321,
        newsPerMinute: 0,
        filingsPerHour: 0,
        scenarios: ['newsBurst:CRUX:5:1m@3m'],
      }),
    ];
    expect(new Set(later.filter((e) => e.type === 'NewsItem').map((e) => e.value.headline)).size).toBe(5);
    const filings = events.filter((e) => e.type === 'Filing');
    expect(filings.map((f) => [f.key, f.value.formType, f.value.items])).toEqual([
      ['DYNA', '8-K', ['2.02', '5.02']],
      ['ECHO', '4', []],
    ]);
    expect(filings[0]!.timestamp - (DEFAULT_FEED_START + 4 * MINUTE)).toBeLessThan(10);
    expect(filings[1]!.value.insider).toMatchObject({ role: 'CEO', direction: 'SELL' });
  });

  it('parses scenario specs and refuses bad ones with the syntax', () => {
    expect(parseScenario('drop:ACME:6%:2m@30s')).toEqual({
      kind: 'drop',
      symbol: 'ACME',
      fraction: 0.06,
      over: '2m',
      at: '30s',
    });
    expect(parseScenario('volumeSpike:ACME:5x:3m@1m')).toEqual({
      kind: 'volumeSpike',
      symbol: 'ACME',
      factor: 5,
      over: '3m',
      at: '1m',
    });
    expect(parseScenario('newsBurst:ACME:5@45s')).toEqual({ kind: 'newsBurst', symbol: 'ACME', count: 5, at: '45s' });
    expect(parseScenario('filing:ACME:8-K:2.02,5.02@60s')).toEqual({
      kind: 'filing',
      symbol: 'ACME',
      formType: '8-K',
      items: ['2.02', '5.02'],
      at: '60s',
    });
    for (const bad of [
      'drop:ACME:6:2m@30s',
      'drop:ACME:6%:2m',
      'melt:ACME@1s',
      'newsBurst:ACME:many@1s',
      'drop:ACME:6%:soon@1s',
    ]) {
      expect(() => parseScenario(bad), bad).toThrow(/Expected drop:SYM:6%:2m@30s/);
    }
    const error = (() => {
      try {
        planFeed({ duration: '1m', rate: 0, scenarios: ['drop:ACME:6%:2m@30s'] });
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(AgentStreamsError);
    expect((error as AgentStreamsError).code).toBe(ErrorCode.CONNECTOR_OPTIONS_INVALID);
    // Every problem at once: the rate and the scenario that outlasts the feed.
    expect((error as AgentStreamsError).message).toMatch(/rate must be > 0.*ends 150000 ms into the feed/);
  });

  it('parses volatility burst specs, and refuses a factor below 1 and overlapping bursts', () => {
    expect(parseScenario('volatility:ACME:4x:3m@1m')).toEqual({
      kind: 'volatility',
      symbol: 'ACME',
      factor: 4,
      over: '3m',
      at: '1m',
    });
    expect(parseScenario('volatility:BOLT:2.5:90s@0s')).toEqual({
      kind: 'volatility',
      symbol: 'BOLT',
      factor: 2.5,
      over: '90s',
      at: '0s',
    });
    for (const bad of [
      'volatility:ACME:4x@1m',
      'volatility:ACME:wild:3m@1m',
      'volatility:ACME:4x:soon@1m',
      'volatility:ACME:4x:3m:1m@1m',
    ]) {
      expect(() => parseScenario(bad), bad).toThrow(/volatility:SYM:4x:3m@1m/);
    }
    expect(() => planFeed({ duration: '10m', scenarios: ['volatility:ACME:0.5x:1m@1m'] })).toThrow(
      /the factor must be >= 1/,
    );
    expect(() =>
      planFeed({ duration: '10m', scenarios: ['volatility:ACME:3x:2m@1m', 'volatility:ACME:5x:1m@2m'] }),
    ).toThrow(/overlap on ACME/);
    // Back to back, or on different symbols, is fine.
    expect(
      planFeed({
        duration: '10m',
        scenarios: ['volatility:ACME:3x:2m@1m', 'volatility:ACME:5x:1m@3m', 'volatility:BOLT:2x:2m@1m'],
      }).scenarios,
    ).toHaveLength(3);
  });
});

describe('synthetic feed through the topology test driver', () => {
  it('drives the market-signals agents: the planted drop and volume spike are found, and the background raises nothing above medium', () => {
    const driver = new TopologyTestDriver(
      marketSignals({ application: 'feed' }),
      loadSchemas(join(import.meta.dirname, '../../schemas')),
      { services: { analysis: () => new Map() } },
    );
    // Feed events are test records as they are: key, recordType, value and timestamp.
    // A flat volume profile: at 14:30 UTC the intraday curve falls fast from the opening peak, and the volume-spike
    // agent's EWMA baseline (no seasonality) would still stand at the peak, hiding the planted spike.
    for (const event of marketFeed({
      seed: 4,
      rate: 100,
      duration: '10m',
      intraday: false,
      scenarios: ['drop:ACME:6%:2m@2m', 'volumeSpike:BOLT:6x:1m@7m'],
    }))
      driver.pipe<FeedEvent['value']>('market.events', event);
    const findings = driver
      .readOutput<{ symbol: string; agent: string; severity: string }>('feed.findings')
      .map((f) => f.value);
    const planted = (f: { symbol: string; agent: string }): boolean =>
      (f.symbol === 'ACME' && f.agent === 'price-move') || (f.symbol === 'BOLT' && f.agent === 'volume-spike');
    for (const [symbol, agent] of [
      ['ACME', 'price-move'],
      ['BOLT', 'volume-spike'],
    ]) {
      expect(
        findings.some(
          (f) => f.symbol === symbol && f.agent === agent && (f.severity === 'high' || f.severity === 'critical'),
        ),
        `${agent} on ${symbol}`,
      ).toBe(true);
    }
    // The background (everything not planted) raises nothing above medium.
    expect(
      findings
        .filter((f) => !planted(f) && f.severity !== 'info' && f.severity !== 'low' && f.severity !== 'medium')
        .map((f) => `${f.symbol} ${f.agent} ${f.severity}`),
    ).toEqual([]);
  });
});

describe('synthetic feed and the volatility agent', () => {
  // The quiet background must not look like a volatility burst: the agent judges every symbol after its warm-up and
  // raises nothing high or critical. (An occasional medium is sampling noise a z-score of 3 admits.)
  it.each([
    { seed: 7, symbols: 12, rate: 200, duration: '10m' },
    { seed: 11, symbols: 20, rate: 200, duration: '15m' },
  ])(
    'raises no high or critical volatility finding on the quiet background of seed $seed with $symbols symbols',
    (options) => {
      const driver = new TopologyTestDriver(
        marketSignals({ application: 'quiet' }),
        loadSchemas(join(import.meta.dirname, '../../schemas')),
        { services: { analysis: () => new Map() } },
      );
      for (const event of marketFeed(options)) driver.pipe<FeedEvent['value']>('market.events', event);
      const volatility = driver
        .readOutput<{ symbol: string; agent: string; severity: string }>('quiet.findings')
        .map((f) => f.value)
        .filter((f) => f.agent === 'volatility');
      expect(volatility.filter((f) => f.severity === 'high' || f.severity === 'critical')).toEqual([]);
      for (const { symbol } of planFeed(options).symbols) {
        expect(
          driver.stateOf<{ count: number }>('volatility', 'volatility', symbol)?.count ?? 0,
          symbol,
        ).toBeGreaterThan(60);
      }
    },
  );
});

describe('synthetic feed to Kafka', () => {
  it('refuses a speed-up that is not a positive number before producing anything', async () => {
    for (const speed of [0, -2, Number.NaN, Number.POSITIVE_INFINITY]) {
      await expect(
        runFeed(config, { duration: '1s', rate: 10, speed, topic: uniqueName('never') }),
      ).rejects.toMatchObject({
        code: ErrorCode.CONNECTOR_OPTIONS_INVALID,
        message: expect.stringMatching(/speed must be a positive number/),
      });
    }
  });

  it('produces every generated event as decodable Avro, keyed by symbol, to a topic it creates with 6 partitions', async () => {
    const topic = uniqueName('feed');
    const options = {
      seed: 21,
      rate: 2000,
      duration: '10s',
      newsPerMinute: 60,
      filingsPerHour: 1200,
      scenarios: ['newsBurst:ACME:3@2s', 'filing:BOLT:8-K:2.02@3s'],
    };
    const expected = [...marketFeed(options)];
    const result = await runFeed(config, { ...options, topic, pace: false });
    console.log(
      `feed → Kafka: ${result.events} events in ${result.seconds.toFixed(2)} s = ${result.eventsPerSecond} events/s`,
    );
    expect(result.events).toBe(expected.length);
    expect(result.partitions).toBe(6);
    expect(result.byType.NewsItem).toBeGreaterThanOrEqual(3);
    expect(result.byType.Filing).toBeGreaterThanOrEqual(1);

    const kafka = kafkaClient();
    const admin = kafka.admin();
    await admin.connect();
    const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
    await admin.disconnect();
    expect(metadata.topics[0]!.partitions).toHaveLength(6);

    const records = await readTopic(kafka, topic);
    expect(records).toHaveLength(expected.length);
    const counts: Record<string, number> = {};
    for (const r of records) counts[r.recordType] = (counts[r.recordType] ?? 0) + 1;
    expect(counts).toEqual(
      Object.fromEntries(
        Object.entries(result.byType)
          .filter(([, n]) => n > 0)
          .map(([t, n]) => [MarketRecord[t as keyof typeof MarketRecord], n]),
      ),
    );
    for (const r of records) {
      const symbols = 'symbols' in r.value ? (r.value.symbols as string[]) : [r.value.symbol as string];
      expect(symbols).toContain(r.key);
    }
    // Per key, Kafka holds exactly the generated sequence, in order (one key, one partition, idempotent producer).
    const byKey = (items: Array<{ key: string; value: unknown }>): Map<string, string[]> => {
      const map = new Map<string, string[]>();
      for (const i of items) map.set(i.key, [...(map.get(i.key) ?? []), JSON.stringify(i.value)]);
      return map;
    };
    const normalise = (v: unknown): unknown => JSON.parse(JSON.stringify(v));
    expect(byKey(records.map((r) => ({ key: r.key, value: normalise(r.value) })))).toEqual(
      byKey(expected.map((e) => ({ key: e.key, value: normalise(e.value) }))),
    );
  });
});
