// Generated from schemas/**/*.avsc by `agent-streams schemas generate`. Do not edit.

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
