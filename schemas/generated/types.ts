// Generated from schemas/**/*.avsc by `agent-streams schemas generate`. Do not edit.

export type Severity = 'info' | 'low' | 'medium' | 'high' | 'critical';

/** A high-priority finding for one portfolio, with its analysis. Key: portfolioId. */
export interface Alert {
  /** Deterministic: hex SHA-256 of the sorted finding ids */
  alertId: string;
  /** Findings the alert is about */
  findingIds: Array<string>;
  /** Portfolio alerted */
  portfolioId: string;
  /** Ticker */
  symbol: string;
  /** Severity after exposure; analysis can never raise it */
  severity: Severity;
  /** Earliest window start of its findings (epoch ms, UTC) */
  windowStart: number;
  /** Event time of the triggering finding (epoch ms, UTC) */
  eventTime: number;
  /** What happened and why it matters */
  analysis: string;
  /** What to do about it */
  recommendedAction: string;
  /** Model that wrote the analysis, or rules-only */
  model: string;
  /** Why the analysis is rules-only, when it is */
  reason: string;
  /** The model's text contradicts the rules: it asked for a higher severity than they allow, or recommended a trade on third-party text; read rulesAnalysis beside it */
  modelDisagreed: boolean;
  /** What the rules alone say about the finding, kept beside the model's analysis */
  rulesAnalysis: string;
}

/** Subject and record type name of Alert. */
export const AlertType = 'agentstreams.fleet.Alert';

/** One portfolio's hour: what was found and alerted, summarised. Key: portfolioId. */
export interface Digest {
  /** Deterministic: hex SHA-256 of portfolioId and hourStart */
  digestId: string;
  /** Portfolio */
  portfolioId: string;
  /** Start of the hour (epoch ms, UTC) */
  hourStart: number;
  /** Findings in the hour */
  findingCount: number;
  /** Findings at or above the portfolio's alert level */
  alertCount: number;
  /** Finding count per severity */
  bySeverity: Record<string, number>;
  /** Summaries of the most severe findings */
  topFindings: Array<string>;
  /** The digest text */
  summary: string;
  /** Model that wrote the summary, or rules-only */
  model: string;
}

/** Subject and record type name of Digest. */
export const DigestType = 'agentstreams.fleet.Digest';

/** What an agent found. Key: symbol (market-wide findings) or portfolioId|symbol (portfolio findings). */
export interface Finding {
  /** Deterministic: hex SHA-256 of agent, rule, symbol, portfolioId and windowStart, so a replay rewrites the same finding */
  findingId: string;
  /** Agent type, e.g. price-move */
  agent: string;
  /** Rule that fired, e.g. drop-2m */
  rule: string;
  /** Ticker */
  symbol: string;
  /** Portfolio the finding concerns; empty for market-wide findings */
  portfolioId: string;
  /** Rule severity (exposure may raise it; untrusted text never does) */
  severity: Severity;
  /** Start of the evidence window (epoch ms, UTC) */
  windowStart: number;
  /** End of the evidence window (epoch ms, UTC) */
  windowEnd: number;
  /** Event time of the record that triggered it (epoch ms, UTC) */
  eventTime: number;
  /** Numbers behind the finding, e.g. return (fraction), zScore, volumeMultiple */
  evidence: Record<string, number>;
  /** One sentence for people */
  summary: string;
  /** Topic of the triggering record */
  sourceTopic: string;
  /** Partition of the triggering record */
  sourcePartition: number;
  /** Offset of the triggering record */
  sourceOffset: number;
}

/** Subject and record type name of Finding. */
export const FindingType = 'agentstreams.fleet.Finding';

export interface Holding {
  /** Ticker */
  symbol: string;
  /** Fraction of the portfolio's value, 0..1 */
  weight: number;
}

/** Subject and record type name of Holding. */
export const HoldingType = 'agentstreams.fleet.Holding';

export type AlertLevel = 'medium' | 'high' | 'critical';

/** A portfolio the fleet watches: its holdings and the thresholds its rules use. Loaded into shared state with `agent-streams table load`. */
export interface Portfolio {
  /** Stable id, e.g. growth */
  portfolioId: string;
  /** Display name */
  name: string;
  /** What the portfolio holds */
  holdings: Array<Holding>;
  /** A finding on a holding at least this heavy is raised one severity level */
  raiseAtWeight: number;
  /** Multiplies the price-move return thresholds for this portfolio: 0.5 is twice as sensitive, 2 half as sensitive; must be > 0 */
  moveThresholdScale: number;
  /** Lowest severity that raises an alert for this portfolio */
  alertAt: AlertLevel;
}

/** Subject and record type name of Portfolio. */
export const PortfolioType = 'agentstreams.fleet.Portfolio';

export type InsiderDirection = 'BUY' | 'SELL' | 'OTHER';

/** An insider's transaction as reported on a Form 4. */
export interface InsiderTransaction {
  /** Reporting owner, e.g. Jane Doe */
  name: string;
  /** Relationship to the issuer, e.g. CEO, Director, 10% owner */
  role: string;
  /** Shares transacted (a count > 0; the direction says which way) */
  shares: number;
  /** Price per share in USD; null for grants and gifts */
  price: null | number;
  /** BUY: open-market purchase (code P); SELL: open-market sale (code S); OTHER: grants, exercises, gifts */
  direction: InsiderDirection;
}

/** Subject and record type name of InsiderTransaction. */
export const InsiderTransactionType = 'agentstreams.market.InsiderTransaction';

/** A regulatory filing by or about an issuer (e.g. SEC EDGAR). Key: symbol. */
export interface Filing {
  /** Filing id, unique, e.g. the SEC accession number 0000320193-26-000010 */
  id: string;
  /** Ticker of the issuer, upper case */
  symbol: string;
  /** Form type as filed, e.g. 8-K, 10-Q, 10-K, 4 (a string, not an enum, so new forms need no schema change) */
  formType: string;
  /** 8-K item numbers, e.g. 2.02 (results of operations), 5.02 (officer or director change); empty for forms without items */
  items: Array<string>;
  /** Acceptance time at the regulator (epoch milliseconds, UTC) */
  eventTime: number;
  /** Form 4 only: the insider transaction reported; null for other forms */
  insider: null | InsiderTransaction;
  /** Link to the filing, if known */
  url: null | string;
}

/** Subject and record type name of Filing. */
export const FilingType = 'agentstreams.market.Filing';

/** A news story about one or more instruments. Key: symbol; a story about several symbols is produced once per symbol (same id), so every symbol's partition sees it. */
export interface NewsItem {
  /** Story id, unique per source; the copies of a multi-symbol story share it (deduplicate on it) */
  id: string;
  /** Tickers the story is about, upper case, at least one */
  symbols: Array<string>;
  /** Headline as published (untrusted text) */
  headline: string;
  /** Story text, plain (untrusted text); empty for headline-only wires */
  body: string;
  /** Publisher or wire, e.g. Reuters, Business Wire */
  source: string;
  /** Publication time (epoch milliseconds, UTC) */
  eventTime: number;
  /** Link to the story, if known */
  url: null | string;
}

/** Subject and record type name of NewsItem. */
export const NewsItemType = 'agentstreams.market.NewsItem';

/** A quote update for one instrument. Key: symbol. */
export interface PriceTick {
  /** Ticker, upper case, e.g. ACME */
  symbol: string;
  /** When the price was observed (epoch milliseconds, UTC) */
  eventTime: number;
  /** Last price in the instrument's currency */
  price: number;
  /** Best bid, if known */
  bid: null | number;
  /** Best ask, if known */
  ask: null | number;
  /** ISO 4217 currency code */
  currency: string;
  /** Exchange or venue code */
  venue: string;
}

/** Subject and record type name of PriceTick. */
export const PriceTickType = 'agentstreams.market.PriceTick';

export type TradeSide = 'BUY' | 'SELL' | 'UNKNOWN';

/** An executed trade. Key: symbol. */
export interface Trade {
  /** Ticker, upper case */
  symbol: string;
  /** Execution time (epoch milliseconds, UTC) */
  eventTime: number;
  /** Execution price in the instrument's currency */
  price: number;
  /** Shares or units traded */
  quantity: number;
  /** Aggressor side */
  side: TradeSide;
  /** Venue trade id, unique per venue */
  tradeId: string;
}

/** Subject and record type name of Trade. */
export const TradeType = 'agentstreams.market.Trade';
