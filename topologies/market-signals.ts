/**
 * The market-monitoring fleet's signal side: the router splits market.events by record type into per-signal
 * topics (keyed by symbol, so a symbol stays on one partition), and the signal agents turn signals into findings.
 * Each processor is its own consumer group; run each with `agent-streams run topologies/market-signals.ts -p NAME`.
 */
import {
  defineTopology,
  processor,
  router,
  store,
  topic,
  tumbling,
  windowed,
  type KeyWindowState,
  type Topic,
  type Topology,
  type TopicOf,
} from '../runtime/index.ts';
import {
  AlertType,
  DigestType,
  FilingType,
  FindingType,
  NewsItemType,
  PortfolioType,
  PriceTickType,
  TradeType,
  type Alert,
  type Digest,
  type Filing,
  type Finding,
  type NewsItem,
  type PriceTick,
  type Trade,
} from '../schemas/generated/types.ts';
import { defaultPriceMoveOptions, priceMove, priceStore } from '../processors/price-move.ts';
import { defaultVolumeSpikeOptions, volumeSpike, volumeStore } from '../processors/volume-spike.ts';
import { defaultVolatilityOptions, volatility, volatilityStore } from '../processors/volatility.ts';
import { defaultNewsOptions, newsAgent, newsStore } from '../processors/news.ts';
import { filingsAgent } from '../processors/filings.ts';
import { exposureStore, portfolioExposure, portfolioProblems, portfolios } from '../processors/portfolio-exposure.ts';
import { alertAnalyst } from '../processors/alert-analyst.ts';
import { digestAggregation, digestDraft, digestWriter, type DigestAccumulator } from '../processors/digest.ts';
import { analysisService, digestService } from '../processors/analysis/services.ts';
import { fleetClickHouseSink } from '../processors/results/sink.ts';

export interface MarketSignalsOptions {
  application?: string;
  /** The topic market events are produced to (default `market.events`). Everything downstream is `<application>.…`. */
  eventsTopic?: string;
  partitions?: number;
  /** How late a finding may arrive for its hour's digest. */
  digestGrace?: string;
  /** The digest period: an hour in production; the demo uses a minute so that a one-minute run shows digests. */
  digestSize?: string;
  /**
   * How long after its hour closes a digest is amended by late findings (a catch-up after an outage, a replay, an
   * agent slower than the others): the digest is written again under the same id, re-summarised, and ClickHouse
   * keeps the newest. Findings later than this go to the late-records topic. Default 24h.
   */
  digestAmendWithin?: string;
}

/** The record types on the events topic: what the router dispatches on. */
export type MarketEvents = {
  [PriceTickType]: PriceTick;
  [TradeType]: Trade;
  [NewsItemType]: NewsItem;
  [FilingType]: Filing;
};

/** The fleet's topics as typed handles: what its processors read and write, and what tests pipe and read. */
export interface MarketTopics {
  events: Topic<MarketEvents>;
  prices: TopicOf<PriceTick>;
  trades: TopicOf<Trade>;
  news: TopicOf<NewsItem>;
  filings: TopicOf<Filing>;
  findings: TopicOf<Finding>;
  portfolioFindings: TopicOf<Finding>;
  alerts: TopicOf<Alert>;
  drafts: TopicOf<Digest>;
  digests: TopicOf<Digest>;
}

export function marketTopics(options: Pick<MarketSignalsOptions, 'application' | 'eventsTopic'> = {}): MarketTopics {
  const application = options.application ?? 'market';
  return {
    events: topic<MarketEvents>(options.eventsTopic ?? 'market.events', [
      PriceTickType,
      TradeType,
      NewsItemType,
      FilingType,
    ]),
    prices: topic<PriceTick>(`${application}.signals.price`, PriceTickType),
    trades: topic<Trade>(`${application}.signals.trade`, TradeType),
    news: topic<NewsItem>(`${application}.signals.news`, NewsItemType),
    filings: topic<Filing>(`${application}.signals.filing`, FilingType),
    findings: topic<Finding>(`${application}.findings`, FindingType),
    portfolioFindings: topic<Finding>(`${application}.portfolio-findings`, FindingType),
    alerts: topic<Alert>(`${application}.alerts`, AlertType),
    drafts: topic<Digest>(`${application}.digest-drafts`, DigestType),
    digests: topic<Digest>(`${application}.digests`, DigestType),
  };
}

/**
 * The schema version a processor was built against, for a record type it reads: the repository's schemas/, read at
 * start. A record written with another registered version (an older producer, a replay, a newer writer that added a
 * field with a default) reaches the processor resolved to this one: defaults filled in, unknown fields skipped,
 * renamed fields under their new names (docs/schemas.md).
 */
const schema = (file: string): URL => new URL(`../schemas/${file}`, import.meta.url);

/** The digest window's store: per portfolio, its open hours. */
const hours = store<KeyWindowState<DigestAccumulator>>('hours');

export function marketSignals(options: MarketSignalsOptions = {}): Topology {
  const partitions = options.partitions ?? 6;
  const application = options.application ?? 'market';
  const t = marketTopics(options);
  const analyst = alertAnalyst({ output: t.alerts });
  const writer = digestWriter({ output: t.digests });
  return defineTopology({
    application,
    topics: Object.fromEntries(Object.values(t).map((handle) => [handle.name, { partitions }])),
    tables: { [portfolios.name]: { recordType: PortfolioType, keyField: 'portfolioId', validate: portfolioProblems } },
    // The LLM behind the analyst and the digest writer, and the rows the sink writes (drafts stay out of ClickHouse).
    services: { [analyst.service]: analysisService(), [writer.service]: digestService() },
    sink: {
      clickhouse: fleetClickHouseSink([t.findings.name, t.portfolioFindings.name, t.alerts.name, t.digests.name]),
    },
    processors: {
      router: router({
        inputs: [t.events],
        routes: { [PriceTickType]: t.prices, [TradeType]: t.trades, [NewsItemType]: t.news, [FilingType]: t.filings },
      }),
      'price-move': processor({
        inputs: [t.prices],
        readerSchemas: { [PriceTickType]: schema('market/PriceTick.avsc') },
        outputs: [t.findings],
        stores: [priceStore],
        tables: [portfolios],
        process: priceMove({ ...defaultPriceMoveOptions, portfoliosTable: portfolios, output: t.findings }),
      }),
      volatility: processor({
        inputs: [t.prices],
        readerSchemas: { [PriceTickType]: schema('market/PriceTick.avsc') },
        outputs: [t.findings],
        stores: [volatilityStore],
        process: volatility({ ...defaultVolatilityOptions, output: t.findings }),
      }),
      'volume-spike': processor({
        inputs: [t.trades],
        readerSchemas: { [TradeType]: schema('market/Trade.avsc') },
        outputs: [t.findings],
        stores: [volumeStore],
        process: volumeSpike({ ...defaultVolumeSpikeOptions, output: t.findings }),
      }),
      news: processor({
        inputs: [t.news],
        readerSchemas: { [NewsItemType]: schema('market/NewsItem.avsc') },
        outputs: [t.findings],
        stores: [newsStore],
        process: newsAgent({ ...defaultNewsOptions, output: t.findings }),
      }),
      filings: processor({
        inputs: [t.filings],
        readerSchemas: { [FilingType]: schema('market/Filing.avsc') },
        outputs: [t.findings],
        process: filingsAgent({ output: t.findings }),
      }),
      'portfolio-exposure': processor({
        inputs: [t.findings],
        readerSchemas: { [FindingType]: schema('fleet/Finding.avsc') },
        outputs: [t.portfolioFindings],
        tables: [portfolios],
        stores: [exposureStore],
        process: portfolioExposure({ output: t.portfolioFindings }),
      }),
      'alert-analyst': processor({
        inputs: [t.portfolioFindings],
        readerSchemas: { [FindingType]: schema('fleet/Finding.avsc') },
        outputs: [t.alerts],
        tables: [portfolios],
        enrich: { service: analyst.service, request: analyst.request },
        process: analyst.process,
      }),
      'digest-window': windowed({
        inputs: [t.portfolioFindings],
        readerSchemas: { [FindingType]: schema('fleet/Finding.avsc') },
        outputs: [t.drafts],
        store: hours,
        aggregation: {
          window: tumbling({
            size: options.digestSize ?? '1h',
            grace: options.digestGrace ?? '2m',
            amendWithin: options.digestAmendWithin ?? '24h',
          }),
          ...digestAggregation,
        },
        emit: 'close',
        wallClockCloseIntervalMs: 10_000,
        onResult: digestDraft(t.drafts),
      }),
      'digest-writer': processor({
        inputs: [t.drafts],
        readerSchemas: { [DigestType]: schema('fleet/Digest.avsc') },
        outputs: [t.digests],
        tables: [portfolios],
        enrich: { service: writer.service, request: writer.request },
        process: writer.process,
      }),
    },
  });
}

/**
 * `agent-streams run topologies/market-signals.ts`: AS_FLEET_APP, AS_FLEET_EVENTS_TOPIC, AS_FLEET_DIGEST_SIZE,
 * AS_FLEET_DIGEST_GRACE and AS_FLEET_DIGEST_AMEND_WITHIN adjust it.
 */
export default function fromEnvironment(): Topology {
  return marketSignals({
    application: process.env.AS_FLEET_APP ?? 'market',
    ...(process.env.AS_FLEET_EVENTS_TOPIC ? { eventsTopic: process.env.AS_FLEET_EVENTS_TOPIC } : {}),
    ...(process.env.AS_FLEET_DIGEST_SIZE ? { digestSize: process.env.AS_FLEET_DIGEST_SIZE } : {}),
    ...(process.env.AS_FLEET_DIGEST_GRACE ? { digestGrace: process.env.AS_FLEET_DIGEST_GRACE } : {}),
    ...(process.env.AS_FLEET_DIGEST_AMEND_WITHIN
      ? { digestAmendWithin: process.env.AS_FLEET_DIGEST_AMEND_WITHIN }
      : {}),
  });
}
