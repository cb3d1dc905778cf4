/**
 * The market-monitoring fleet's signal side: the router splits market.events by record type into per-signal
 * topics (keyed by symbol, so a symbol stays on one partition), and the signal agents turn signals into findings.
 * Each processor is its own consumer group; run each with `agent-streams run topologies/market-signals.ts -p NAME`.
 */
import { defineTopology, processor, router, windowed, type Topology } from '../runtime/topology/topology.ts';
import type { Finding } from '../processors/finding.ts';
import { defaultPriceMoveOptions, priceMove } from '../processors/price-move.ts';
import { defaultVolumeSpikeOptions, volumeSpike } from '../processors/volume-spike.ts';
import { defaultVolatilityOptions, volatility } from '../processors/volatility.ts';
import { FindingType } from '../processors/finding.ts';
import { defaultNewsOptions, newsAgent } from '../processors/news.ts';
import { filingsAgent } from '../processors/filings.ts';
import { EXPOSURE_STORE, PORTFOLIOS_TABLE, portfolioExposure, portfolioProblems } from '../processors/portfolio-exposure.ts';
import { alertAnalyst, AlertType } from '../processors/alert-analyst.ts';
import { digestAggregation, digestDraft, DigestType, digestWriter } from '../processors/digest.ts';
import { tumbling } from '../runtime/windows/index.ts';

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

export function marketSignals(options: MarketSignalsOptions = {}): Topology {
  const partitions = options.partitions ?? 6;
  const application = options.application ?? 'market';
  const events = options.eventsTopic ?? 'market.events';
  const signals = { price: `${application}.signals.price`, trade: `${application}.signals.trade`, news: `${application}.signals.news`, filing: `${application}.signals.filing` };
  const findings = `${application}.findings`;
  const portfolioFindings = `${application}.portfolio-findings`;
  const alerts = `${application}.alerts`;
  const analyst = alertAnalyst({ output: alerts });
  const drafts = `${application}.digest-drafts`;
  const digests = `${application}.digests`;
  const writer = digestWriter({ output: digests });
  return defineTopology({
    application,
    topics: {
      [events]: { partitions },
      [signals.price]: { partitions },
      [signals.trade]: { partitions },
      [signals.news]: { partitions },
      [signals.filing]: { partitions },
      [findings]: { partitions },
      [portfolioFindings]: { partitions },
      [alerts]: { partitions },
      [drafts]: { partitions },
      [digests]: { partitions },
    },
    tables: { [PORTFOLIOS_TABLE]: { recordType: 'agentstreams.fleet.Portfolio', keyField: 'portfolioId', validate: portfolioProblems } },
    processors: {
      router: router({
        inputs: [events],
        routes: {
          'agentstreams.market.PriceTick': signals.price,
          'agentstreams.market.Trade': signals.trade,
          'agentstreams.market.NewsItem': signals.news,
          'agentstreams.market.Filing': signals.filing,
        },
        outputs: {
          [signals.price]: ['agentstreams.market.PriceTick'],
          [signals.trade]: ['agentstreams.market.Trade'],
          [signals.news]: ['agentstreams.market.NewsItem'],
          [signals.filing]: ['agentstreams.market.Filing'],
        },
      }),
      'price-move': processor({
        inputs: [signals.price],
        outputs: { [findings]: [FindingType] },
        stores: ['prices'],
        tables: [PORTFOLIOS_TABLE],
        process: priceMove({ ...defaultPriceMoveOptions, portfoliosTable: PORTFOLIOS_TABLE, output: findings }),
      }),
      volatility: processor({
        inputs: [signals.price],
        outputs: { [findings]: [FindingType] },
        stores: ['volatility'],
        process: volatility({ ...defaultVolatilityOptions, output: findings }),
      }),
      'volume-spike': processor({
        inputs: [signals.trade],
        outputs: { [findings]: [FindingType] },
        stores: ['volume'],
        process: volumeSpike({ ...defaultVolumeSpikeOptions, output: findings }),
      }),
      news: processor({
        inputs: [signals.news],
        outputs: { [findings]: [FindingType] },
        stores: ['news'],
        process: newsAgent({ ...defaultNewsOptions, output: findings }),
      }),
      filings: processor({
        inputs: [signals.filing],
        outputs: { [findings]: [FindingType] },
        process: filingsAgent({ output: findings }),
      }),
      'portfolio-exposure': processor({
        inputs: [findings],
        outputs: { [portfolioFindings]: [FindingType] },
        tables: [PORTFOLIOS_TABLE],
        stores: [EXPOSURE_STORE],
        process: portfolioExposure({ output: portfolioFindings }),
      }),
      'alert-analyst': processor({
        inputs: [portfolioFindings],
        outputs: { [alerts]: [AlertType] },
        tables: [PORTFOLIOS_TABLE],
        enrich: { service: analyst.service, request: analyst.request },
        process: analyst.process,
      }),
      'digest-window': windowed({
        inputs: [portfolioFindings],
        outputs: { [drafts]: [DigestType] },
        store: 'hours',
        aggregation: { window: tumbling({ size: options.digestSize ?? '1h', grace: options.digestGrace ?? '2m', amendWithin: options.digestAmendWithin ?? '24h' }), init: digestAggregation.init, add: (acc, f: Finding) => digestAggregation.add(acc, f) },
        emit: 'close',
        wallClockCloseIntervalMs: 10_000,
        onResult: digestDraft(drafts),
      }),
      'digest-writer': processor({
        inputs: [drafts],
        outputs: { [digests]: [DigestType] },
        tables: [PORTFOLIOS_TABLE],
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
    ...(process.env.AS_FLEET_DIGEST_AMEND_WITHIN ? { digestAmendWithin: process.env.AS_FLEET_DIGEST_AMEND_WITHIN } : {}),
  });
}
