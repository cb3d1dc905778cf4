/**
 * price-move: returns over several lookbacks per symbol, and gaps between consecutive ticks.
 *
 * State per symbol: a price history downsampled to one sample per 5 s bucket over the longest lookback, plus the
 * rules currently firing, so a condition that persists is reported once (again only if it gets more severe).
 *
 * Portfolios may scale the lookback thresholds (`moveThresholdScale`). A lookback fires at the most sensitive
 * scale among the portfolios holding the symbol (never less sensitive than the global thresholds); the market-wide
 * finding keeps the global severity (`low` when only a scaled threshold was crossed) and carries the thresholds in
 * its evidence, so that portfolio-exposure grades it again for each portfolio. Gaps use the global threshold only.
 */
import { store, type ProcessorContext, type StreamRecord, type Table } from '../runtime/index.ts';
import type { Portfolio, PriceTick } from '../schemas/generated/types.ts';
import { finding, severityRank, type FindingTopic, type Severity } from './finding.ts';

export type { PriceTick };

export const PRICE_MOVE_AGENT = 'price-move';

/** Absolute return thresholds (fractions) for medium, high and critical. */
export interface MoveThresholds {
  medium: number;
  high: number;
  critical: number;
}

export interface PriceMoveOptions {
  output: FindingTopic;
  /** Lookbacks in ms with their global thresholds. */
  lookbacks: Array<{ name: string; ms: number } & MoveThresholds>;
  /** A jump between consecutive ticks at least this large (fraction) is a gap. */
  gap: number;
  bucketMs: number;
  /**
   * The shared table of portfolios whose `moveThresholdScale` makes the lookbacks more sensitive for the symbols
   * they hold; the processor must declare it under `tables`. Without it only the global thresholds apply.
   */
  portfoliosTable?: Table<Portfolio>;
}

export const defaultPriceMoveOptions: Omit<PriceMoveOptions, 'output'> = {
  lookbacks: [
    { name: '1m', ms: 60_000, medium: 0.02, high: 0.04, critical: 0.07 },
    { name: '2m', ms: 120_000, medium: 0.03, high: 0.05, critical: 0.08 },
    { name: '5m', ms: 300_000, medium: 0.04, high: 0.06, critical: 0.1 },
  ],
  gap: 0.03,
  bucketMs: 5_000,
};

interface PriceState {
  /** [bucketStart, lastPriceInBucket], oldest first. */
  samples: Array<[number, number]>;
  last?: [number, number];
  /**
   * rule → [highest rank at the most sensitive scale, window start of the episode, highest rank reported]. State
   * written before per-portfolio scales has no third element: both ranks were the reported one.
   */
  firing: Record<string, [number, number, number?]>;
}

/** Per symbol: its sampled price history and the rules firing. */
export const priceStore = store<PriceState>('prices');

/** The severity of a return against thresholds multiplied by `scale` (a portfolio's `moveThresholdScale`). */
export function moveSeverity(move: number, thresholds: MoveThresholds, scale = 1): Severity | undefined {
  const size = Math.abs(move);
  if (size >= thresholds.critical * scale) return 'critical';
  if (size >= thresholds.high * scale) return 'high';
  if (size >= thresholds.medium * scale) return 'medium';
  return undefined;
}

/** A portfolio's threshold scale. Rows loaded before the field existed lack it; the schema's default (1) applies. */
export function moveThresholdScaleOf(portfolio: Portfolio): number {
  const scale: number | undefined = portfolio.moveThresholdScale;
  return scale ?? 1;
}

/** The global thresholds a lookback finding was graded with (from its evidence); none for other findings. */
export function moveThresholdsOf(evidence: Record<string, number>): MoveThresholds | undefined {
  const { medium, high, critical } = evidence;
  return medium !== undefined && high !== undefined && critical !== undefined ? { medium, high, critical } : undefined;
}

export function priceMove(options: PriceMoveOptions) {
  const longest = Math.max(...options.lookbacks.map((l) => l.ms));
  /** The most sensitive scale among the portfolios holding the symbol, capped at 1. */
  const sensitivity = (symbol: string, ctx: ProcessorContext): number => {
    let scale = 1;
    if (!options.portfoliosTable) return scale;
    for (const portfolio of ctx.table(options.portfoliosTable).values()) {
      if (portfolio.holdings.some((h) => h.symbol === symbol && h.weight > 0))
        scale = Math.min(scale, moveThresholdScaleOf(portfolio));
    }
    return scale;
  };
  return (record: StreamRecord<PriceTick>, ctx: ProcessorContext): void => {
    const tick = record.value;
    if (!(tick.price > 0)) throw new Error(`price ${tick.price} of ${tick.symbol} is not positive`);
    const store = ctx.store(priceStore);
    const state = store.get() ?? { samples: [], firing: {} };
    const t = record.timestamp;

    /**
     * Reports `severity` when it rises or when `escalation` (the grade at the most sensitive scale, which decides
     * whether the rule fires at all) does: every portfolio, the most sensitive included, sees its own escalations.
     */
    const fire = (
      rule: string,
      severity: Severity | undefined,
      windowStart: number,
      evidence: Record<string, number>,
      summary: string,
      escalation = severity,
    ): void => {
      const current = state.firing[rule];
      if (!severity || !escalation) {
        delete state.firing[rule];
        return;
      }
      const rank = severityRank(escalation);
      const reported = severityRank(severity);
      const [firedRank, episodeStart, reportedRank] = current
        ? [current[0], current[1], current[2] ?? current[0]]
        : [-1, windowStart, -1];
      if (rank <= firedRank && reported <= reportedRank) return;
      state.firing[rule] = [Math.max(rank, firedRank), episodeStart, Math.max(reported, reportedRank)];
      ctx.forward(options.output, {
        key: tick.symbol,
        value: finding(
          {
            agent: PRICE_MOVE_AGENT,
            rule,
            symbol: tick.symbol,
            severity,
            windowStart: episodeStart,
            windowEnd: t,
            eventTime: t,
            evidence,
            summary,
          },
          record,
        ),
      });
    };

    if (state.last && t > state.last[0]) {
      const jump = tick.price / state.last[1] - 1;
      const severity =
        Math.abs(jump) >= options.gap ? (Math.abs(jump) >= 2 * options.gap ? 'high' : 'medium') : undefined;
      fire(
        'gap',
        severity,
        state.last[0],
        { return: jump, previousPrice: state.last[1], price: tick.price },
        `${tick.symbol} gapped ${(jump * 100).toFixed(1)}% between ticks`,
      );
    }
    const scale = sensitivity(tick.symbol, ctx);
    for (const lookback of options.lookbacks) {
      const from = t - lookback.ms;
      const base = state.samples.find(([bucket]) => bucket >= from);
      if (!base) continue;
      const move = tick.price / base[1] - 1;
      const sensitive = moveSeverity(move, lookback, scale);
      fire(
        `move-${lookback.name}`,
        sensitive && (moveSeverity(move, lookback) ?? 'low'),
        base[0],
        {
          return: move,
          fromPrice: base[1],
          price: tick.price,
          lookbackMs: lookback.ms,
          medium: lookback.medium,
          high: lookback.high,
          critical: lookback.critical,
          thresholdScale: scale,
        },
        `${tick.symbol} ${move < 0 ? 'fell' : 'rose'} ${(Math.abs(move) * 100).toFixed(1)}% in ${lookback.name}`,
        sensitive,
      );
    }

    const bucket = t - (t % options.bucketMs);
    const lastSample = state.samples[state.samples.length - 1];
    if (lastSample && lastSample[0] === bucket) lastSample[1] = tick.price;
    else if (!lastSample || bucket > lastSample[0]) state.samples.push([bucket, tick.price]);
    while (state.samples.length > 0 && state.samples[0]![0] < t - longest) state.samples.shift();
    if (!state.last || t >= state.last[0]) state.last = [t, tick.price];
    store.set(state);
  };
}
