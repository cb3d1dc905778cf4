// Generated from schemas/**/*.avsc by `agent-streams schemas generate`. Do not edit.

export type Severity = 'info' | 'low' | 'medium' | 'high' | 'critical';

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
