/**
 * A seeded, reproducible market feed: price ticks and trades for a universe of symbols, with news and filings in
 * the background, and scenarios planted at chosen offsets so that agents have something known to find.
 *
 * Two layers. `marketFeed(options)` is pure: a generator of events in event-time order, with no clock and no I/O,
 * so tests and the topology test driver can use it without Kafka, and the same options always give the same events.
 * `runFeed(config, options)` produces that sequence to Kafka in batches, paced to the rate or as fast as it can.
 *
 * The model: each symbol's price follows geometric Brownian motion with its own volatility, observed with a little
 * bounded tick noise and a bid/ask spread, rounded to the tick size; trade sizes are log-normal with an optional
 * U-shaped intraday profile. Event time is a simulated clock: event k is stamped `start + k·1000/rate` ms.
 */
import type { Message } from 'kafkajs';
import type { Config } from '../runtime/config/index.ts';
import { AgentStreamsError, ErrorCode } from '../runtime/errors.ts';
import { abortableSleep } from '../runtime/retry.ts';
import { parseDuration, type Duration } from '../runtime/windows/duration.ts';
import type { Filing, InsiderDirection, NewsItem, PriceTick, Trade, TradeSide } from '../schemas/generated/types.ts';
import { MarketRecord, marketRecordNames, type MarketRecordName, type MarketRecordValue } from './market-records.ts';
import { openMarketProducer, type MarketProducer, type MarketProducerOptions } from './market-producer.ts';

// ---------------------------------------------------------------------------------------------------------------
// Options and scenarios

export type Scenario =
  /** `symbol` falls by `fraction` (0.06 = 6%) over `over`, starting `at` after the feed starts. */
  | { kind: 'drop'; symbol: string; fraction: number; over: Duration; at: Duration }
  /** Trades of `symbol` are `factor` times their usual size for `over`. */
  | { kind: 'volumeSpike'; symbol: string; factor: number; over: Duration; at: Duration }
  /**
   * `symbol`'s return noise is `factor` (≥ 1) times its usual size for `over`, without a net move: the extra noise is a
   * Brownian bridge from its own random stream, zero at both ends, so before and after the burst the symbol's events
   * are exactly those of the unplanted feed. A drop on the same symbol takes precedence while it lasts.
   */
  | { kind: 'volatility'; symbol: string; factor: number; over: Duration; at: Duration }
  /** `count` negative headlines about `symbol`, spread evenly over `over` (default 1m, or less if the feed ends sooner). */
  | { kind: 'newsBurst'; symbol: string; count: number; over?: Duration; at: Duration }
  /** One filing, e.g. an 8-K with items 2.02 and 5.02, or a Form 4 (an insider sale). */
  | { kind: 'filing'; symbol: string; formType: string; items?: readonly string[]; at: Duration };

export interface FeedOptions {
  /** Same seed and options → the same events. Default 1. */
  seed?: number;
  /** How many symbols (named ACME, BOLT, … then generated tickers), or the tickers themselves. Default 50. */
  symbols?: number | readonly string[];
  /** Events per second of event time (and of wall time when paced). Default 1000. */
  rate?: number;
  /** Simulated time the feed covers; events = rate × duration. Default 60s. */
  duration?: Duration;
  /** Event time of the first event: epoch ms or ISO-8601. Default 2026-01-05T14:30:00Z, a Monday's US open. */
  start?: number | string;
  /** Share of market-data events that are trades (the rest are price ticks). Default 0.4. */
  tradeShare?: number;
  /** Background news stories per minute across the universe. Default 2. */
  newsPerMinute?: number;
  /** Background filings per hour across the universe. Default 30. */
  filingsPerHour?: number;
  /** U-shaped trade volume over the US session (heavy at open and close). Default true. */
  intraday?: boolean;
  /** Planted scenarios, as values or specs such as `drop:ACME:6%:2m@30s` (see `parseScenario`). */
  scenarios?: ReadonlyArray<Scenario | string>;
}

export const DEFAULT_FEED_START = Date.UTC(2026, 0, 5, 14, 30);

function invalid(message: string, details: Record<string, unknown> = {}): AgentStreamsError {
  return new AgentStreamsError(ErrorCode.CONNECTOR_OPTIONS_INVALID, message, { details });
}

const SCENARIO_SYNTAX =
  'drop:SYM:6%:2m@30s | volumeSpike:SYM:5x:3m@1m | volatility:SYM:4x:3m@1m | newsBurst:SYM:5[:1m]@45s | filing:SYM:8-K[:2.02,5.02]@60s (offsets and lengths are durations: 500ms, 30s, 2m, 1h)';

/** Parses a scenario spec as the CLI takes it. Offsets (`@30s`) count from the feed's start in event time. */
export function parseScenario(spec: string): Scenario {
  const at = spec.lastIndexOf('@');
  const bad = (why: string): AgentStreamsError =>
    invalid(`Scenario "${spec}": ${why}. Expected ${SCENARIO_SYNTAX}.`, { spec });
  if (at < 0) throw bad('missing @offset');
  const offset = spec.slice(at + 1);
  const [kind, symbol, ...rest] = spec.slice(0, at).split(':');
  if (!symbol) throw bad('missing symbol');
  const checkDuration = (value: string | undefined, what: string): string => {
    if (value === undefined || !parseDuration(value).ok) throw bad(`${what} "${value ?? ''}" is not a duration`);
    return value;
  };
  checkDuration(offset, 'offset');
  switch (kind) {
    case 'drop': {
      const [percent, over] = rest;
      const match = /^(\d+(?:\.\d+)?)%$/.exec(percent ?? '');
      if (!match || rest.length !== 2) throw bad('a drop needs a percentage and a length, e.g. drop:ACME:6%:2m@30s');
      return { kind, symbol, fraction: Number(match[1]) / 100, over: checkDuration(over, 'length'), at: offset };
    }
    case 'volumeSpike': {
      const [factor, over] = rest;
      const match = /^(\d+(?:\.\d+)?)x?$/.exec(factor ?? '');
      if (!match || rest.length !== 2)
        throw bad('a volume spike needs a factor and a length, e.g. volumeSpike:ACME:5x:3m@1m');
      return { kind, symbol, factor: Number(match[1]), over: checkDuration(over, 'length'), at: offset };
    }
    case 'volatility': {
      const [factor, over] = rest;
      const match = /^(\d+(?:\.\d+)?)x?$/.exec(factor ?? '');
      if (!match || rest.length !== 2)
        throw bad('a volatility burst needs a factor and a length, e.g. volatility:ACME:4x:3m@1m');
      return { kind, symbol, factor: Number(match[1]), over: checkDuration(over, 'length'), at: offset };
    }
    case 'newsBurst': {
      const [count, over] = rest;
      if (!/^\d+$/.test(count ?? '') || rest.length > 2)
        throw bad('a news burst needs a headline count, e.g. newsBurst:ACME:5@45s');
      return {
        kind,
        symbol,
        count: Number(count),
        ...(over === undefined ? {} : { over: checkDuration(over, 'length') }),
        at: offset,
      };
    }
    case 'filing': {
      const [formType, items] = rest;
      if (!formType || rest.length > 2) throw bad('a filing needs a form type, e.g. filing:ACME:8-K:2.02,5.02@60s');
      return { kind, symbol, formType, ...(items ? { items: items.split(',').map((i) => i.trim()) } : {}), at: offset };
    }
    default:
      throw bad(`unknown kind "${kind ?? ''}"`);
  }
}

/** The spec form of a scenario, used as the label on the events it produces. */
export function formatScenario(s: Scenario): string {
  switch (s.kind) {
    case 'drop':
      return `drop:${s.symbol}:${Number((s.fraction * 100).toFixed(6))}%:${s.over}@${s.at}`;
    case 'volumeSpike':
      return `volumeSpike:${s.symbol}:${s.factor}x:${s.over}@${s.at}`;
    case 'volatility':
      return `volatility:${s.symbol}:${s.factor}x:${s.over}@${s.at}`;
    case 'newsBurst':
      return `newsBurst:${s.symbol}:${s.count}${s.over === undefined ? '' : `:${s.over}`}@${s.at}`;
    case 'filing':
      return `filing:${s.symbol}:${s.formType}${s.items && s.items.length > 0 ? `:${s.items.join(',')}` : ''}@${s.at}`;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Events

type EventOf<N extends MarketRecordName> = {
  type: N;
  /** Registry subject / record type, as the router sees it. */
  recordType: (typeof MarketRecord)[N];
  /** Kafka key: the symbol. A story about several symbols is one event per symbol. */
  key: string;
  value: MarketRecordValue[N];
  /** Event time (epoch ms), also what the test driver takes as the record timestamp. */
  timestamp: number;
  /** Label of the planted scenario this event belongs to; absent for background events. */
  scenario?: string;
};

export type FeedEvent = { [N in MarketRecordName]: EventOf<N> }[MarketRecordName];

// ---------------------------------------------------------------------------------------------------------------
// Deterministic randomness

/** mulberry32: small, fast and good enough for simulation; one independent stream per concern. */
class Random {
  private state: number;
  private spare: number | undefined;

  constructor(seed: number, stream: number) {
    // splitmix32 of (seed, stream), so streams of one seed are unrelated and stream 0 of seed 1 ≠ stream 1 of seed 0.
    let z = (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(stream + 1, 0x85ebca6b)) >>> 0;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    this.state = (z ^ (z >>> 16)) >>> 0;
  }

  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Standard normal (Box–Muller, both values used). */
  normal(): number {
    if (this.spare !== undefined) {
      const value = this.spare;
      this.spare = undefined;
      return value;
    }
    const u = 1 - this.next();
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** Waiting time of a Poisson process with `perMs` events per millisecond. */
  exponential(perMs: number): number {
    return -Math.log(1 - this.next()) / perMs;
  }
}

const Stream = { universe: 0, slots: 1, news: 2, filings: 3, scenarios: 4, volatility: 5, symbolBase: 100 } as const;

// ---------------------------------------------------------------------------------------------------------------
// The universe

const NAMED: ReadonlyArray<readonly [string, string]> = [
  ['ACME', 'Acme Corp'],
  ['BOLT', 'Bolt Motors'],
  ['CRUX', 'Crux Biotech'],
  ['DYNA', 'Dynamo Energy'],
  ['ECHO', 'Echo Media'],
  ['FLUX', 'Flux Semiconductor'],
  ['GRID', 'Grid Utilities'],
  ['HALO', 'Halo Pharma'],
  ['IONX', 'Ionix Materials'],
  ['JADE', 'Jade Retail'],
  ['KITE', 'Kite Airlines'],
  ['LUMA', 'Luma Software'],
  ['MYST', 'Mystic Games'],
  ['NOVA', 'Nova Telecom'],
  ['ORCA', 'Orca Shipping'],
  ['PIXL', 'Pixel Labs'],
  ['QUAD', 'Quadrant Bank'],
  ['ROVR', 'Rover Logistics'],
  ['SOLR', 'Solaris Power'],
  ['TERA', 'Terabyte Cloud'],
  ['UMBR', 'Umbra Security'],
  ['VOLT', 'Volt Batteries'],
  ['WAVE', 'Wave Networks'],
  ['XENO', 'Xeno Therapeutics'],
  ['YARD', 'Yardline Homes'],
  ['ZEST', 'Zest Foods'],
];
const NAME_OF = new Map(NAMED);
const VENUES = ['XNAS', 'XNYS', 'ARCX', 'BATS'] as const;

/** Tickers beyond the named ones: the same list for every seed, so a symbol means the same thing across runs. */
function universeTickers(count: number): string[] {
  const tickers = NAMED.slice(0, count).map(([t]) => t);
  const taken = new Set(tickers);
  const random = new Random(0x5eed, Stream.universe);
  while (tickers.length < count) {
    const length = 3 + random.int(2);
    let ticker = '';
    for (let i = 0; i < length; i += 1) ticker += String.fromCharCode(65 + random.int(26));
    if (!taken.has(ticker)) {
      taken.add(ticker);
      tickers.push(ticker);
    }
  }
  return tickers;
}

export interface SymbolProfile {
  symbol: string;
  name: string;
  venue: string;
  /** Price at the feed's start (USD). */
  initialPrice: number;
  /** Annualised volatility of the GBM (0.3 = 30%). */
  volatility: number;
  /** Annualised drift of the GBM. */
  drift: number;
  /** Share of market-data events that are this symbol's. */
  weight: number;
  /** Quoted spread in basis points of the price. */
  spreadBps: number;
  /** Bound of the uniform tick noise around the GBM path, in basis points. */
  noiseBps: number;
  /** Median trade size in shares. */
  medianQuantity: number;
  /** Issuer id used in filing ids (10 digits). */
  cik: string;
}

function profiles(tickers: readonly string[], seed: number): SymbolProfile[] {
  const random = new Random(seed, Stream.universe);
  // Liquidity follows a Zipf law over a seeded ranking: a few symbols trade most.
  const ranks = tickers.map((_, i) => i);
  for (let i = ranks.length - 1; i > 0; i -= 1) {
    const j = random.int(i + 1);
    [ranks[i], ranks[j]] = [ranks[j]!, ranks[i]!];
  }
  const raw = ranks.map((rank) => 1 / (rank + 1) ** 0.8);
  const total = raw.reduce((a, b) => a + b, 0);
  return tickers.map((symbol, i) => ({
    symbol,
    name: NAME_OF.get(symbol) ?? `${symbol[0]}${symbol.slice(1).toLowerCase()} Holdings`,
    venue: random.pick(VENUES),
    initialPrice: roundTick(Math.exp(Math.log(8) + random.next() * (Math.log(400) - Math.log(8)))),
    volatility: 0.15 + 0.75 * random.next() ** 2,
    drift: 0.05,
    weight: raw[i]! / total,
    spreadBps: 2 + 18 * random.next(),
    noiseBps: 0.5 + 1.5 * random.next(),
    medianQuantity: Math.round(Math.exp(Math.log(50) + random.next() * (Math.log(500) - Math.log(50)))),
    cik: String(1_000_000 + random.int(8_999_999)).padStart(10, '0'),
  }));
}

// ---------------------------------------------------------------------------------------------------------------
// The plan: options checked once and compiled to numbers

interface PlannedScenario {
  scenario: Scenario;
  label: string;
  atMs: number;
  overMs: number;
}

export interface FeedPlan {
  seed: number;
  rate: number;
  durationMs: number;
  start: number;
  /** Market-data slots: rate × duration. A multi-symbol story adds one event per extra symbol. */
  slots: number;
  tradeShare: number;
  newsPerMinute: number;
  filingsPerHour: number;
  intraday: boolean;
  symbols: SymbolProfile[];
  scenarios: PlannedScenario[];
}

const FEED_KEYS = new Set([
  'seed',
  'symbols',
  'rate',
  'duration',
  'start',
  'tradeShare',
  'newsPerMinute',
  'filingsPerHour',
  'intraday',
  'scenarios',
]);

/** Checks every option (all problems at once) and compiles them; `marketFeed` and `runFeed` call it for you. */
export function planFeed(options: FeedOptions = {}): FeedPlan {
  const problems: string[] = [];
  const seed = options.seed ?? 1;
  if (!Number.isSafeInteger(seed)) problems.push(`seed must be a whole number, got ${seed}`);
  const rate = options.rate ?? 1000;
  if (!(Number.isFinite(rate) && rate > 0 && rate <= 10_000_000))
    problems.push(`rate must be > 0 and <= 10000000 events/s, got ${rate}`);
  const durationParse = parseDuration(options.duration ?? '60s');
  if (!durationParse.ok) problems.push(`duration: ${durationParse.reason}`);
  const durationMs = durationParse.ok ? durationParse.ms : 0;
  if (durationParse.ok && durationMs <= 0) problems.push('duration must be > 0');
  let start = DEFAULT_FEED_START;
  if (typeof options.start === 'string') {
    start = Date.parse(options.start);
    if (!Number.isFinite(start)) problems.push(`start "${options.start}" is not an ISO-8601 time`);
  } else if (options.start !== undefined) {
    start = options.start;
    if (!Number.isSafeInteger(start) || start < 0) problems.push(`start must be epoch milliseconds >= 0, got ${start}`);
  }
  const tradeShare = options.tradeShare ?? 0.4;
  if (!(tradeShare >= 0 && tradeShare <= 1)) problems.push(`tradeShare must be between 0 and 1, got ${tradeShare}`);
  const newsPerMinute = options.newsPerMinute ?? 2;
  if (!(newsPerMinute >= 0 && Number.isFinite(newsPerMinute)))
    problems.push(`newsPerMinute must be >= 0, got ${newsPerMinute}`);
  const filingsPerHour = options.filingsPerHour ?? 30;
  if (!(filingsPerHour >= 0 && Number.isFinite(filingsPerHour)))
    problems.push(`filingsPerHour must be >= 0, got ${filingsPerHour}`);
  for (const key of Object.keys(options))
    if (!FEED_KEYS.has(key) && !RUN_KEYS.has(key)) problems.push(`unknown option "${key}"`);

  let tickers: string[];
  const symbols = options.symbols ?? 50;
  if (typeof symbols === 'number') {
    if (!Number.isInteger(symbols) || symbols < 1 || symbols > 100_000)
      problems.push(`symbols must be a whole number from 1 to 100000, got ${symbols}`);
    tickers = universeTickers(Number.isInteger(symbols) && symbols >= 1 && symbols <= 100_000 ? symbols : 1);
  } else {
    tickers = [...new Set(symbols)];
    if (tickers.length === 0) problems.push('symbols must not be empty');
    for (const t of tickers)
      if (!/^[A-Z0-9][A-Z0-9.-]{0,15}$/.test(t)) problems.push(`symbol "${t}" is not an upper-case ticker`);
  }

  const planned: PlannedScenario[] = [];
  for (const raw of options.scenarios ?? []) {
    let scenario: Scenario;
    try {
      scenario = typeof raw === 'string' ? parseScenario(raw) : raw;
    } catch (error) {
      problems.push((error as Error).message);
      continue;
    }
    const label = typeof raw === 'string' ? raw : formatScenario(scenario);
    const at = parseDuration(scenario.at);
    const declaredOver = 'over' in scenario ? scenario.over : undefined;
    let over = parseDuration(declaredOver ?? 0);
    // A burst without a length spreads over a minute, or what is left of the feed when that is less.
    if (declaredOver === undefined && scenario.kind === 'newsBurst' && at.ok)
      over = { ok: true, ms: Math.max(0, Math.min(60_000, durationMs - at.ms - 1)) };
    if (!at.ok || !over.ok) {
      problems.push(
        `scenario ${label}: ${!at.ok ? at.reason : ''}${!over.ok ? (over as { reason: string }).reason : ''}`,
      );
      continue;
    }
    const end = at.ms + over.ms;
    if (durationParse.ok && end > durationMs)
      problems.push(
        `scenario ${label} ends ${end} ms into the feed, after its ${durationMs} ms duration; lengthen --duration or move it earlier`,
      );
    if (!tickers.includes(scenario.symbol)) {
      // A planted symbol joins the universe rather than failing: naming it is a clear enough request.
      if (/^[A-Z0-9][A-Z0-9.-]{0,15}$/.test(scenario.symbol)) tickers.push(scenario.symbol);
      else problems.push(`scenario ${label}: "${scenario.symbol}" is not an upper-case ticker`);
    }
    if (scenario.kind === 'drop' && !(scenario.fraction > 0 && scenario.fraction < 1))
      problems.push(`scenario ${label}: the drop must be between 0% and 100%`);
    if (scenario.kind === 'drop' && over.ms <= 0) problems.push(`scenario ${label}: the drop needs a length > 0`);
    if (scenario.kind === 'volumeSpike' && !(scenario.factor > 0 && Number.isFinite(scenario.factor)))
      problems.push(`scenario ${label}: the factor must be > 0`);
    if (scenario.kind === 'volatility' && !(scenario.factor >= 1 && Number.isFinite(scenario.factor)))
      problems.push(`scenario ${label}: the factor must be >= 1 (the burst adds noise)`);
    if (scenario.kind === 'volatility' && over.ms <= 0)
      problems.push(`scenario ${label}: the burst needs a length > 0`);
    if (
      scenario.kind === 'newsBurst' &&
      !(Number.isInteger(scenario.count) && scenario.count >= 1 && scenario.count <= 10_000)
    ) {
      problems.push(`scenario ${label}: the headline count must be from 1 to 10000`);
    }
    planned.push({ scenario, label, atMs: at.ms, overMs: over.ms });
  }
  const drops = planned.filter((p) => p.scenario.kind === 'drop');
  for (const a of drops) {
    for (const b of drops) {
      if (a !== b && a.scenario.symbol === b.scenario.symbol && a.atMs <= b.atMs && b.atMs <= a.atMs + a.overMs) {
        problems.push(
          `drop scenarios ${a.label} and ${b.label} overlap on ${a.scenario.symbol}; plant one deeper drop instead`,
        );
      }
    }
  }
  const bursts = planned.filter((p) => p.scenario.kind === 'volatility');
  for (const a of bursts) {
    for (const b of bursts) {
      if (a !== b && a.scenario.symbol === b.scenario.symbol && a.atMs <= b.atMs && b.atMs < a.atMs + a.overMs) {
        problems.push(
          `volatility scenarios ${a.label} and ${b.label} overlap on ${a.scenario.symbol}; plant one stronger burst instead`,
        );
      }
    }
  }
  if (problems.length > 0) throw invalid(`Invalid feed options: ${problems.join('; ')}.`, { problems });
  return {
    seed,
    rate,
    durationMs,
    start,
    slots: Math.max(1, Math.round((rate * durationMs) / 1000)),
    tradeShare,
    newsPerMinute,
    filingsPerHour,
    intraday: options.intraday ?? true,
    symbols: profiles(tickers, seed),
    scenarios: planned.sort((a, b) => a.atMs - b.atMs),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Text for news and filings

const NEGATIVE = [
  '{name} shares slide after it cuts full-year guidance',
  '{name} faces regulator probe into its accounting',
  '{name} recalls products over safety concerns',
  'Analysts downgrade {name} to sell on weak demand',
  '{name} misses quarterly revenue estimates',
  '{name} finance chief departs unexpectedly',
  '{name} hit by cyberattack, operations disrupted',
  'Short seller targets {name} in new report',
  '{name} loses its largest customer contract',
  '{name} warns of supply chain disruption',
] as const;
const POSITIVE = [
  '{name} beats quarterly estimates',
  '{name} raises full-year outlook',
  '{name} wins multi-year government contract',
  'Analysts upgrade {name} to buy',
  '{name} announces share buyback',
  '{name} receives regulatory approval for new product',
] as const;
const NEUTRAL = [
  '{name} to present at industry conference',
  '{name} schedules quarterly earnings call',
  '{name} names new board member',
  '{name} opens regional headquarters',
  '{name} completes previously announced debt offering',
] as const;
/** Headline templates by tone (`{name}` is the company): planted news bursts use the negative ones. */
export const headlineTemplates = { negative: NEGATIVE, positive: POSITIVE, neutral: NEUTRAL } as const;
const SOURCES = [
  'Reuters',
  'Bloomberg',
  'Dow Jones Newswires',
  'Business Wire',
  'PR Newswire',
  'GlobeNewswire',
] as const;
// The background's 8-K items are the routine ones (agreements, results, votes, Reg FD, other events): an officer
// change (5.02) or worse is a planted scenario, so a quiet background raises nothing high.
const EIGHT_K_ITEMS = ['1.01', '2.02', '5.07', '7.01', '8.01'] as const;
const INSIDERS = [
  'Jordan Avery',
  'Sam Patel',
  'Riley Chen',
  'Morgan Diaz',
  'Casey Novak',
  'Alex Kim',
  'Taylor Brooks',
  'Jamie Okafor',
] as const;
const ROLES = ['CEO', 'CFO', 'COO', 'Director', 'General Counsel', '10% owner'] as const;

// ---------------------------------------------------------------------------------------------------------------
// The generator

/** One trading year of market hours, the unit of GBM time: 252 days × 6.5 hours. */
const YEAR_MS = 252 * 6.5 * 3_600_000;
const SESSION_OPEN_UTC_MIN = 14 * 60 + 30;
const SESSION_MINUTES = 390;

function tickSize(price: number): number {
  return price >= 1 ? 0.01 : 0.0001;
}
/** Multiplying by a tick leaves binary noise (0.07 * 3 = 0.21000000000000002); rounding to 4 places removes it. */
function clean(price: number): number {
  return Math.round(price * 10_000) / 10_000;
}
function roundTick(price: number): number {
  const tick = tickSize(price);
  return clean(Math.round(price / tick) * tick);
}
function floorTick(price: number): number {
  const tick = tickSize(price);
  return clean(Math.floor(price / tick + 1e-9) * tick);
}

/** Volume multiple over the US session: ~2× at the open and close, ~0.4× at midday, mean 1; thin outside hours. */
function intradayFactor(time: number): number {
  const minute = Math.floor(time / 60_000) % 1440;
  const x = (minute - SESSION_OPEN_UTC_MIN) / SESSION_MINUTES;
  if (x < 0 || x > 1) return 0.3;
  return (0.6 + 2.4 * (2 * x - 1) ** 2) / 1.4;
}

interface SymbolState {
  profile: SymbolProfile;
  random: Random;
  /** GBM reference price (unrounded). */
  ref: number;
  lastTime: number;
  lastMid: number;
  trades: number;
  drop?: { label: string; from: number; to: number; t0: number; t1: number };
  /** The volatility burst in progress: its extra log-price deviation `x` as of `lastTime`. */
  burst?: { label: string; x: number; lastTime: number };
}

type Scheduled =
  | { time: number; order: number; kind: 'news'; label?: string; symbol?: string; index?: number }
  | { time: number; order: number; kind: 'filing'; label?: string; scenario?: Extract<Scenario, { kind: 'filing' }> }
  | {
      time: number;
      order: number;
      kind: 'drop-start' | 'drop-end';
      label: string;
      symbol: string;
      fraction: number;
      overMs: number;
    };

/**
 * The feed as a lazy generator of events in event-time order. Deterministic: the same options always give the same
 * events (the generator reads no clock and no ambient randomness).
 */
export function* marketFeed(options: FeedOptions | FeedPlan = {}): Generator<FeedEvent, void, undefined> {
  const plan = 'slots' in options ? options : planFeed(options);
  const { seed, rate, start, symbols: universe } = plan;
  const seedTag = (seed >>> 0).toString(36);
  const slotRandom = new Random(seed, Stream.slots);
  const newsRandom = new Random(seed, Stream.news);
  const filingRandom = new Random(seed, Stream.filings);
  const scenarioRandom = new Random(seed, Stream.scenarios);
  const states = new Map<string, SymbolState>();
  const stateList: SymbolState[] = universe.map((profile, i) => {
    const state: SymbolState = {
      profile,
      random: new Random(seed, Stream.symbolBase + i),
      ref: profile.initialPrice,
      lastTime: start,
      lastMid: profile.initialPrice,
      trades: 0,
    };
    states.set(profile.symbol, state);
    return state;
  });
  const cumulative: number[] = [];
  let sum = 0;
  for (const p of universe) cumulative.push((sum += p.weight));
  const endTime = start + plan.durationMs;
  const lastSlotTime = start + Math.floor(((plan.slots - 1) * 1000) / rate);

  // Background news and filings are Poisson processes drawn from their own streams up front, so planting a scenario
  // does not change them; scenarios join the same time-ordered queue.
  const queue: Scheduled[] = [];
  let order = 0;
  if (plan.newsPerMinute > 0) {
    for (
      let t = start + newsRandom.exponential(plan.newsPerMinute / 60_000);
      t < endTime;
      t += newsRandom.exponential(plan.newsPerMinute / 60_000)
    ) {
      queue.push({ time: Math.floor(t), order: order++, kind: 'news' });
    }
  }
  if (plan.filingsPerHour > 0) {
    for (
      let t = start + filingRandom.exponential(plan.filingsPerHour / 3_600_000);
      t < endTime;
      t += filingRandom.exponential(plan.filingsPerHour / 3_600_000)
    ) {
      queue.push({ time: Math.floor(t), order: order++, kind: 'filing' });
    }
  }
  const volumeSpikes: Array<{ label: string; symbol: string; factor: number; from: number; to: number }> = [];
  const volatilityBursts: Array<{ label: string; symbol: string; factor: number; from: number; to: number }> = [];
  // Burst noise has its own stream, so planting a burst leaves every other draw of the feed where it was.
  const burstRandom = new Random(seed, Stream.volatility);
  for (const p of plan.scenarios) {
    const at = start + p.atMs;
    const s = p.scenario;
    if (s.kind === 'drop')
      queue.push({
        time: at,
        order: order++,
        kind: 'drop-start',
        label: p.label,
        symbol: s.symbol,
        fraction: s.fraction,
        overMs: p.overMs,
      });
    else if (s.kind === 'volatility')
      volatilityBursts.push({ label: p.label, symbol: s.symbol, factor: s.factor, from: at, to: at + p.overMs });
    else if (s.kind === 'volumeSpike')
      volumeSpikes.push({ label: p.label, symbol: s.symbol, factor: s.factor, from: at, to: at + p.overMs });
    else if (s.kind === 'filing') queue.push({ time: at, order: order++, kind: 'filing', label: p.label, scenario: s });
    else
      for (let i = 0; i < s.count; i += 1)
        queue.push({
          time: at + Math.floor((i * p.overMs) / s.count),
          order: order++,
          kind: 'news',
          label: p.label,
          symbol: s.symbol,
          index: i,
        });
  }
  const byTime = (a: Scheduled, b: Scheduled): number => a.time - b.time || a.order - b.order;
  queue.sort(byTime);
  // Drop ends are inserted when their drop starts; a binary-search insert keeps the queue ordered.
  const schedule = (item: Scheduled): void => {
    let lo = 0;
    let hi = queue.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (byTime(queue[mid]!, item) <= 0) lo = mid + 1;
      else hi = mid;
    }
    queue.splice(lo, 0, item);
  };
  let head = 0;

  /** Moves the symbol's price to `time` and returns the observed mid. */
  const advance = (s: SymbolState, time: number): number => {
    const p = s.profile;
    if (s.drop) {
      // During a planted drop the move is the signal: the path interpolates (in log space) from where the drop
      // began to its end price, plus the usual bounded tick noise, so the planted size is what agents see.
      const progress = Math.min(1, (time - s.drop.t0) / (s.drop.t1 - s.drop.t0));
      const path = s.drop.from * (s.drop.to / s.drop.from) ** progress;
      s.lastTime = time;
      s.lastMid = roundTick(path * (1 + (p.noiseBps / 10_000) * (2 * s.random.next() - 1)));
      return s.lastMid;
    }
    const dt = (time - s.lastTime) / YEAR_MS;
    if (dt > 0) {
      s.ref *= Math.exp(
        (p.drift - (p.volatility * p.volatility) / 2) * dt + p.volatility * Math.sqrt(dt) * s.random.normal(),
      );
      s.lastTime = time;
    }
    s.lastMid = roundTick(
      s.ref * Math.exp(burstDeviation(s, time)) * (1 + (p.noiseBps / 10_000) * (2 * s.random.next() - 1)),
    );
    return s.lastMid;
  };

  const burstAt = (symbol: string, time: number): (typeof volatilityBursts)[number] | undefined =>
    volatilityBursts.find((v) => v.symbol === symbol && time >= v.from && time < v.to);

  /**
   * The extra log-price deviation of a volatility burst at `time`: a Brownian bridge pinned to 0 at the burst's start
   * and end, with (factor² − 1)·σ² variance per unit time, so the path's return noise is `factor` times its own and
   * the burst moves the price nowhere on balance. Sampled exactly from the bridge's conditional law.
   */
  const burstDeviation = (s: SymbolState, time: number): number => {
    const burst = burstAt(s.profile.symbol, time);
    if (!burst) {
      s.burst = undefined;
      return 0;
    }
    if (s.burst?.label !== burst.label) s.burst = { label: burst.label, x: 0, lastTime: burst.from };
    const { x, lastTime } = s.burst;
    if (time > lastTime) {
      const extraVariance = (burst.factor ** 2 - 1) * s.profile.volatility ** 2;
      const remaining = burst.to - lastTime;
      const mean = (x * (burst.to - time)) / remaining;
      const variance = (extraVariance * ((time - lastTime) * (burst.to - time))) / remaining / YEAR_MS;
      s.burst = { label: burst.label, x: mean + Math.sqrt(variance) * burstRandom.normal(), lastTime: time };
    }
    return s.burst.x;
  };

  const quote = (s: SymbolState, mid: number): { bid: number; ask: number } => {
    const half = Math.max(tickSize(mid), roundTick((mid * s.profile.spreadBps) / 20_000));
    return { bid: roundTick(Math.max(tickSize(mid), mid - half)), ask: roundTick(mid + half) };
  };

  const tickEvent = (s: SymbolState, time: number, mid: number, scenario: string | undefined): FeedEvent => {
    const value: PriceTick = {
      symbol: s.profile.symbol,
      eventTime: time,
      price: mid,
      ...quote(s, mid),
      currency: 'USD',
      venue: s.profile.venue,
    };
    return {
      type: 'PriceTick',
      recordType: MarketRecord.PriceTick,
      key: value.symbol,
      value,
      timestamp: time,
      ...(scenario ? { scenario } : {}),
    };
  };

  const tradeEvent = (s: SymbolState, time: number): FeedEvent => {
    const mid = advance(s, time);
    const r = s.random;
    const side: TradeSide = r.next() < (s.drop ? 0.3 : 0.5) ? 'BUY' : 'SELL';
    const { bid, ask } = quote(s, mid);
    const spike = volumeSpikes.find((v) => v.symbol === s.profile.symbol && time >= v.from && time < v.to);
    let quantity = s.profile.medianQuantity * Math.exp(r.normal()) * (plan.intraday ? intradayFactor(time) : 1);
    // Most prints are round lots; the rest odd lots.
    // The coin is drawn whatever the quantity, so the time of day scales volumes without changing the random
    // path of prices, news and filings that follows.
    const roundLot = r.next() < 0.6;
    quantity = quantity >= 100 && roundLot ? Math.round(quantity / 100) * 100 : Math.max(1, Math.round(quantity));
    if (spike) quantity = Math.round(quantity * spike.factor);
    s.trades += 1;
    const value: Trade = {
      symbol: s.profile.symbol,
      eventTime: time,
      price: side === 'BUY' ? ask : bid,
      quantity: Math.max(1, quantity),
      side,
      tradeId: `${s.profile.symbol}-${seedTag}-${s.trades}`,
    };
    const scenario = spike?.label ?? s.drop?.label ?? s.burst?.label;
    return {
      type: 'Trade',
      recordType: MarketRecord.Trade,
      key: value.symbol,
      value,
      timestamp: time,
      ...(scenario ? { scenario } : {}),
    };
  };

  const labelHash = (label: string): number => [...label].reduce((h, c) => (h * 31 + c.charCodeAt(0)) >>> 0, 7);
  let newsCount = 0;
  function* newsEvents(item: Extract<Scheduled, { kind: 'news' }>, time: number): Generator<FeedEvent> {
    // Planted headlines draw from their own stream; background stories from the news stream.
    const r = item.label ? scenarioRandom : newsRandom;
    const primary = item.symbol ? states.get(item.symbol)! : stateList[r.int(stateList.length)]!;
    const related =
      !item.symbol && stateList.length > 1 && r.next() < 0.2 ? stateList[r.int(stateList.length)]! : undefined;
    const involved = related && related !== primary ? [primary, related] : [primary];
    const mood = item.label ? 0 : r.next();
    const templates = mood < 0.3 ? NEGATIVE : mood < 0.6 ? POSITIVE : NEUTRAL;
    // A planted burst is that many different stories (a burst of one story repeated is one story to the news agent).
    // Consecutive templates from a place fixed by the scenario's label, so every story of the burst differs.
    const template =
      item.index === undefined
        ? r.pick(templates)
        : templates[(item.index + labelHash(item.label ?? '')) % templates.length]!;
    const headline = template.replace('{name}', primary.profile.name);
    newsCount += 1;
    const id = `news-${seedTag}-${newsCount}`;
    const date = new Date(time).toISOString().slice(0, 10);
    const value: NewsItem = {
      id,
      symbols: involved.map((s) => s.profile.symbol),
      headline,
      body: `${headline} (${primary.profile.symbol}), according to a statement on ${date}. Shares of ${primary.profile.name} last traded at $${primary.lastMid.toFixed(2)}.`,
      source: r.pick(SOURCES),
      eventTime: time,
      url: `https://news.example.com/${id}`,
    };
    for (const symbol of value.symbols) {
      yield {
        type: 'NewsItem',
        recordType: MarketRecord.NewsItem,
        key: symbol,
        value,
        timestamp: time,
        ...(item.label ? { scenario: item.label } : {}),
      };
    }
  }

  let filingCount = 0;
  const filingEvent = (item: Extract<Scheduled, { kind: 'filing' }>, time: number): FeedEvent => {
    const planted = item.scenario;
    const r = planted ? scenarioRandom : filingRandom;
    const s = planted ? states.get(planted.symbol)! : stateList[r.int(stateList.length)]!;
    const u = r.next();
    const formType = planted?.formType ?? (u < 0.4 ? '8-K' : u < 0.8 ? '4' : u < 0.95 ? '10-Q' : '10-K');
    let items: string[] = [];
    if (planted) items = [...(planted.items ?? [])];
    else if (formType === '8-K')
      items = [...new Set<string>([r.pick(EIGHT_K_ITEMS), ...(r.next() < 0.4 ? [r.pick(EIGHT_K_ITEMS)] : [])])]
        .sort()
        .concat('9.01');
    let insider: Filing['insider'] = null;
    if (formType === '4') {
      const v = r.next();
      const direction: InsiderDirection = planted ? 'SELL' : v < 0.55 ? 'SELL' : v < 0.8 ? 'BUY' : 'OTHER';
      insider = {
        name: r.pick(INSIDERS),
        role: planted ? 'CEO' : r.pick(ROLES),
        shares: Math.max(1, Math.round(5_000 * Math.exp(r.normal()) * (planted ? 10 : 1))),
        price: direction === 'OTHER' ? null : s.lastMid,
        direction,
      };
    }
    filingCount += 1;
    const id = `${s.profile.cik}-${String(new Date(time).getUTCFullYear() % 100).padStart(2, '0')}-${seedTag}${String(filingCount).padStart(6, '0')}`;
    const value: Filing = {
      id,
      symbol: s.profile.symbol,
      formType,
      items,
      eventTime: time,
      insider,
      url: `https://filings.example.com/${id}`,
    };
    return {
      type: 'Filing',
      recordType: MarketRecord.Filing,
      key: value.symbol,
      value,
      timestamp: time,
      ...(item.label ? { scenario: item.label } : {}),
    };
  };

  for (let slot = 0; slot < plan.slots; slot += 1) {
    const time = start + Math.floor((slot * 1000) / rate);
    // Drawn for every slot, even one a scheduled event takes, so the market data stays aligned with the seed.
    const pickSymbol = slotRandom.next();
    const pickType = slotRandom.next();
    const due = head < queue.length && queue[head]!.time <= time ? queue[head++]! : undefined;
    if (due) {
      if (head > 1024) {
        queue.splice(0, head);
        head = 0;
      }
      if (due.kind === 'news') {
        yield* newsEvents(due, time);
      } else if (due.kind === 'filing') {
        yield filingEvent(due, time);
      } else if (due.kind === 'drop-start') {
        const s = states.get(due.symbol)!;
        const from = advance(s, time);
        // Rounded down to the tick so that the observed drop is at least the planted fraction.
        const to = floorTick(from * (1 - due.fraction));
        s.drop = { label: due.label, from, to, t0: time, t1: time + due.overMs };
        // Never later than the last slot, so a drop planted to end with the feed still completes inside it.
        schedule({ ...due, kind: 'drop-end', time: Math.min(time + due.overMs, lastSlotTime), order: order++ });
        yield tickEvent(s, time, from, due.label);
      } else {
        const s = states.get(due.symbol)!;
        const to = s.drop!.to;
        s.drop = undefined;
        // The path continues from the drop's end price: the fall is permanent, not a blip.
        s.ref = to;
        s.lastTime = time;
        s.lastMid = to;
        yield tickEvent(s, time, to, due.label);
      }
      continue;
    }
    let lo = 0;
    let hi = cumulative.length - 1;
    const target = pickSymbol * sum;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cumulative[mid]! < target) lo = mid + 1;
      else hi = mid;
    }
    const s = stateList[lo]!;
    if (pickType < plan.tradeShare) yield tradeEvent(s, time);
    else yield tickEvent(s, time, advance(s, time), s.drop?.label ?? s.burst?.label);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Producing to Kafka

const RUN_KEYS = new Set([
  'topic',
  'partitions',
  'register',
  'maxBatchBytes',
  'maxBatchMessages',
  'maxRecordBytes',
  'log',
  'pace',
  'speed',
  'batchSize',
  'signal',
  'onProgress',
  'producer',
]);

export interface FeedProgress {
  events: number;
  /** Event time of the latest event produced. */
  eventTime: number;
  elapsedMs: number;
}

export interface RunFeedOptions extends FeedOptions, Omit<MarketProducerOptions, 'clientId'> {
  /** Hold production to the rate in wall time (default true); false produces as fast as the broker takes it. */
  pace?: boolean;
  /** Paced runs: event time runs this many times faster than wall time (default 1: real time). */
  speed?: number;
  /** Events handed to the producer at a time. Default 2000 (paced runs: about 50 ms of events). */
  batchSize?: number;
  /** Stops the feed after the batch in flight. */
  signal?: AbortSignal;
  /** Called about once a second. */
  onProgress?: (progress: FeedProgress) => void;
  /** Produce through this producer (left open) instead of opening one. */
  producer?: MarketProducer;
}

export interface FeedRunResult {
  topic: string;
  partitions: number;
  /** Kafka records produced (a story about two symbols is two). */
  events: number;
  byType: Record<MarketRecordName, number>;
  firstEventTime: number;
  lastEventTime: number;
  seconds: number;
  eventsPerSecond: number;
  /** True when `signal` stopped the feed before its end. */
  aborted: boolean;
}

export async function runFeed(config: Config, options: RunFeedOptions = {}): Promise<FeedRunResult> {
  const plan = planFeed(options);
  const pace = options.pace ?? true;
  const speed = options.speed ?? 1;
  if (!(speed > 0 && Number.isFinite(speed))) throw invalid(`speed must be a positive number, got ${options.speed}`);
  const batchSize = options.batchSize ?? (pace ? Math.max(1, Math.min(2000, Math.ceil(plan.rate / 20))) : 2000);
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw invalid(`batchSize must be a whole number >= 1, got ${batchSize}`);
  const producer = options.producer ?? (await openMarketProducer(config, { ...options, clientId: 'feed' }));
  const byType = Object.fromEntries(marketRecordNames.map((n) => [n, 0])) as Record<MarketRecordName, number>;
  let events = 0;
  let firstEventTime = plan.start;
  let lastEventTime = plan.start;
  let failure: unknown;
  const inflight: Array<Promise<void>> = [];
  const started = performance.now();
  let nextProgress = started + 1000;
  let batch: Message[] = [];
  let aborted = false;

  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    // Up to two produce requests' worth in flight: the next batch is built while the broker acknowledges one.
    inflight.push(producer.send(batch).then(undefined, (error: unknown) => void (failure ??= error)));
    batch = [];
    while (inflight.length > 2) await inflight.shift();
    if (failure) throw failure;
  };

  try {
    for (const event of marketFeed(plan)) {
      if (options.signal?.aborted) {
        aborted = true;
        break;
      }
      if (events === 0) firstEventTime = event.timestamp;
      batch.push({ key: event.key, value: producer.encodeTrusted(event.type, event.value) });
      byType[event.type] += 1;
      events += 1;
      lastEventTime = event.timestamp;
      if (batch.length >= batchSize) {
        if (pace) {
          const due = started + (event.timestamp - plan.start) / speed;
          const now = performance.now();
          if (due > now) await abortableSleep(due - now, options.signal);
        }
        await flush();
        if (options.onProgress && performance.now() >= nextProgress) {
          nextProgress += 1000;
          options.onProgress({ events, eventTime: lastEventTime, elapsedMs: performance.now() - started });
        }
      }
    }
    await flush();
    await Promise.all(inflight);
    if (failure) throw failure;
  } finally {
    if (!options.producer) await producer.close();
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    topic: producer.topic,
    partitions: producer.partitions,
    events,
    byType,
    firstEventTime,
    lastEventTime,
    seconds,
    eventsPerSecond: Math.round(events / seconds),
    aborted,
  };
}
