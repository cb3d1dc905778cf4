/**
 * volatility: how turbulent a symbol's price is now, against its own recent history, as a z-score.
 *
 * Per symbol, the last price of each 5 s bucket gives log returns. When a bucket closes (the first tick of a later
 * bucket arrives), the realised volatility of the returns of the last minute is measured and compared with the mean
 * and standard deviation of that same measure over the symbol's history (exponentially weighted, ~20 min memory).
 *
 * Choices that keep it quiet when nothing is happening:
 * - The z-score is taken on the logarithm of realised volatility, which is close to normally distributed (Andersen,
 *   Bollerslev, Diebold and Labys 2001), where volatility itself is skewed to the right: on a linear scale, ordinary
 *   noise crossed z = 4 about once per thousand symbol-minutes of the synthetic feed's quiet background.
 * - Returns are demeaned within the window, so a steady trend is not volatility (a move is price-move's business).
 * - The baseline's standard deviation is never taken below the sampling error of a log volatility estimated from the
 *   window's n returns (1 / √(2(n−1))): a baseline that happens to look very steady cannot make noise look extreme,
 *   and a symbol with few ticks, measured from fewer returns, needs a larger excess.
 * - While an episode lasts, the baseline's level learns the window's value clipped at the medium threshold, and its
 *   spread learns nothing: a burst cannot widen the yardstick it is measured with, and a lasting new regime is
 *   still learnt, slowly (a 3× volatility becomes the norm in about 25 min).
 * - An episode starts at `medium` and ends only when the z-score falls below `clear`: reported once, and again only
 *   when it gets more severe, under one finding id.
 *
 * State per symbol is bounded: the returns of one window, the bucket being filled, the baseline and the episode.
 */
import { store, type ProcessorContext, type StreamRecord } from '../runtime/index.ts';
import type { PriceTick } from '../schemas/generated/types.ts';
import { finding, severityRank, type FindingTopic, type Severity } from './finding.ts';

export interface VolatilityOptions {
  output: FindingTopic;
  /** Returns are taken between the last prices of consecutive buckets of this size. */
  bucketMs: number;
  /** The short window whose realised volatility is judged. */
  windowMs: number;
  /** Memory of the baseline: each closed bucket weighs bucketMs / baselineMs in its exponentially weighted mean. */
  baselineMs: number;
  /** History a symbol needs before it is judged. */
  warmupMs: number;
  /** Returns the window needs to be measured at all. */
  minReturns: number;
  /** z-scores for medium, high and critical. */
  medium: number;
  high: number;
  critical: number;
  /** An episode ends when the z-score falls below this. */
  clear: number;
  /** Volatility (annualised) below this counts as this: a price that has not moved is calm, not infinitely calm. */
  minVolatilityAnnualised: number;
}

export const defaultVolatilityOptions: Omit<VolatilityOptions, 'output'> = {
  bucketMs: 5_000,
  windowMs: 60_000,
  baselineMs: 20 * 60_000,
  warmupMs: 5 * 60_000,
  minReturns: 6,
  medium: 3,
  high: 4,
  critical: 6,
  clear: 1,
  minVolatilityAnnualised: 0.05,
};

/** Volatilities are reported annualised over a trading year of 252 days × 6.5 hours (the synthetic feed's unit). */
export const TRADING_YEAR_MS = 252 * 6.5 * 3_600_000;

interface VolatilityState {
  /** Bucket being filled: [bucketStart, lastPrice, eventTime of that price]. */
  open: [number, number, number];
  /** Last price of the latest closed bucket: [bucketStart, price]. */
  closed?: [number, number];
  /** Returns ending in the last window: [bucketStart of its end, log return, ms it spans], oldest first. */
  returns: Array<[number, number, number]>;
  /** Baseline of the window's log volatility (annualised): exponentially weighted mean and variance, and observations. */
  mean: number;
  variance: number;
  count: number;
  /** Bucket at which the symbol's history starts. */
  since: number;
  /** The episode in progress: [severity rank reported, window start of the episode]. */
  firing?: [number, number];
}

/** Per symbol: the window's returns, the bucket being filled, the baseline and the episode. */
export const volatilityStore = store<VolatilityState>('volatility');

export function volatility(options: VolatilityOptions) {
  const alpha = options.bucketMs / options.baselineMs;
  const pct = (x: number): string => `${(x * 100).toFixed(0)}%`;
  return (record: StreamRecord<PriceTick>, ctx: ProcessorContext): void => {
    const tick = record.value;
    if (!(tick.price > 0)) throw new Error(`price ${tick.price} of ${tick.symbol} is not positive`);
    const store = ctx.store(volatilityStore);
    const t = record.timestamp;
    const bucket = t - (t % options.bucketMs);
    const state = store.get();
    if (!state) {
      store.set({ open: [bucket, tick.price, t], returns: [], mean: 0, variance: 0, count: 0, since: bucket });
      return;
    }
    if (bucket < state.open[0]) return; // a tick for a bucket already closed: measured nowhere rather than reopening it
    if (bucket === state.open[0]) {
      if (t >= state.open[2]) state.open = [bucket, tick.price, t];
      store.set(state);
      return;
    }

    // The open bucket closes: its last price ends a return, and the window ending with it is measured.
    const [closedBucket, closedPrice] = state.open;
    if (state.closed) {
      const spanMs = closedBucket - state.closed[0];
      // A return across a silence longer than the window says nothing about the window: start afresh.
      if (spanMs <= options.windowMs)
        state.returns.push([closedBucket, Math.log(closedPrice / state.closed[1]), spanMs]);
      else state.returns = [];
    }
    state.closed = [closedBucket, closedPrice];
    state.open = [bucket, tick.price, t];
    const windowStart = closedBucket + options.bucketMs - options.windowMs;
    while (state.returns.length > 0 && state.returns[0]![0] < windowStart) state.returns.shift();

    const n = state.returns.length;
    if (n >= options.minReturns) {
      // Weighted least squares of r = μ·dt + σ·√dt·ε: the drift is removed, and Σ (r − μ·dt)² / dt has expectation (n − 1)·σ².
      let sumR = 0;
      let sumDt = 0;
      for (const [, r, dt] of state.returns) {
        sumR += r;
        sumDt += dt;
      }
      const drift = sumR / sumDt;
      let squares = 0;
      for (const [, r, dt] of state.returns) squares += (r - drift * dt) ** 2 / dt;
      const vol = Math.sqrt((squares / (n - 1)) * TRADING_YEAR_MS);
      const logVol = Math.log(Math.max(vol, options.minVolatilityAnnualised));
      const std = Math.max(Math.sqrt(state.variance), 1 / Math.sqrt(2 * (n - 1)));
      const warm = closedBucket - state.since >= options.warmupMs && state.count >= options.windowMs / options.bucketMs;

      if (warm) {
        const z = (logVol - state.mean) / std;
        const usual = Math.exp(state.mean);
        if (state.firing && z < options.clear) state.firing = undefined;
        const severity: Severity | undefined =
          z >= options.critical ? 'critical' : z >= options.high ? 'high' : z >= options.medium ? 'medium' : undefined;
        if (severity && (!state.firing || severityRank(severity) > state.firing[0])) {
          const episodeStart = state.firing ? state.firing[1] : windowStart;
          state.firing = [severityRank(severity), episodeStart];
          ctx.forward(options.output, {
            key: tick.symbol,
            value: finding(
              {
                agent: 'volatility',
                rule: 'volatility-z',
                symbol: tick.symbol,
                severity,
                windowStart: episodeStart,
                windowEnd: closedBucket + options.bucketMs,
                eventTime: t,
                evidence: {
                  zScore: z,
                  volatilityAnnualised: vol,
                  baselineVolatilityAnnualised: usual,
                  ratio: vol / usual,
                  baselineMeanLogVolatility: state.mean,
                  baselineStdLogVolatility: std,
                  returns: n,
                  windowMs: options.windowMs,
                  bucketMs: options.bucketMs,
                },
                summary: `${tick.symbol} volatility is ${pct(vol)} annualised over ${options.windowMs / 1000} s, ${(vol / usual).toFixed(1)}× its usual ${pct(usual)} (z ${z.toFixed(1)})`,
              },
              record,
            ),
          });
        }
      }

      // The baseline learns the window's log volatility; once it is trusted, an outlier counts only up to the medium threshold.
      const x = warm
        ? Math.min(Math.max(logVol, state.mean - options.medium * std), state.mean + options.medium * std)
        : logVol;
      const weight = Math.max(alpha, 1 / (state.count + 1));
      const diff = x - state.mean;
      state.mean += weight * diff;
      if (!state.firing) state.variance = (1 - weight) * (state.variance + weight * diff * diff);
      state.count += 1;
    }
    store.set(state);
  };
}
