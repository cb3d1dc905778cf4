/**
 * price-move: returns over several lookbacks per symbol, and gaps between consecutive ticks.
 *
 * State per symbol: a price history downsampled to one sample per 5 s bucket over the longest lookback, plus the
 * rules currently firing, so a condition that persists is reported once (again only if it gets more severe).
 */
import type { ProcessorContext, StreamRecord } from '../runtime/topology/processor.ts';
import { finding, FindingType, severityRank, type Severity } from './finding.ts';

export interface PriceTick {
  symbol: string;
  eventTime: number;
  price: number;
}

export interface PriceMoveOptions {
  output: string;
  /** Lookbacks in ms with the absolute return thresholds (fractions) for medium, high and critical. */
  lookbacks: Array<{ name: string; ms: number; medium: number; high: number; critical: number }>;
  /** A jump between consecutive ticks at least this large (fraction) is a gap. */
  gap: number;
  bucketMs: number;
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
  /** rule → [severity rank fired, window start of the episode]. */
  firing: Record<string, [number, number]>;
}

function severityOf(move: number, t: { medium: number; high: number; critical: number }): Severity | undefined {
  const size = Math.abs(move);
  if (size >= t.critical) return 'critical';
  if (size >= t.high) return 'high';
  if (size >= t.medium) return 'medium';
  return undefined;
}

export function priceMove(options: PriceMoveOptions) {
  const longest = Math.max(...options.lookbacks.map((l) => l.ms));
  return (record: StreamRecord, ctx: ProcessorContext): void => {
    const tick = record.value as PriceTick;
    if (!(tick.price > 0)) throw new Error(`price ${tick.price} of ${tick.symbol} is not positive`);
    const store = ctx.store<PriceState>('prices');
    const state = store.get() ?? { samples: [], firing: {} };
    const t = record.timestamp;

    const fire = (rule: string, severity: Severity | undefined, windowStart: number, evidence: Record<string, number>, summary: string): void => {
      const current = state.firing[rule];
      if (!severity) {
        delete state.firing[rule];
        return;
      }
      const rank = severityRank(severity);
      if (current && current[0] >= rank) return;
      const episodeStart = current ? current[1] : windowStart;
      state.firing[rule] = [rank, episodeStart];
      ctx.forward({
        topic: options.output,
        key: tick.symbol,
        recordType: FindingType,
        value: finding({ agent: 'price-move', rule, symbol: tick.symbol, severity, windowStart: episodeStart, windowEnd: t, eventTime: t, evidence, summary }, record),
      });
    };

    if (state.last && t > state.last[0]) {
      const jump = tick.price / state.last[1] - 1;
      const severity = Math.abs(jump) >= options.gap ? (Math.abs(jump) >= 2 * options.gap ? 'high' : 'medium') : undefined;
      fire('gap', severity, state.last[0], { return: jump, previousPrice: state.last[1], price: tick.price }, `${tick.symbol} gapped ${(jump * 100).toFixed(1)}% between ticks`);
    }
    for (const lookback of options.lookbacks) {
      const from = t - lookback.ms;
      const base = state.samples.find(([bucket]) => bucket >= from);
      if (!base) continue;
      const move = tick.price / base[1] - 1;
      fire(
        `move-${lookback.name}`,
        severityOf(move, lookback),
        base[0],
        { return: move, fromPrice: base[1], price: tick.price, lookbackMs: lookback.ms },
        `${tick.symbol} ${move < 0 ? 'fell' : 'rose'} ${(Math.abs(move) * 100).toFixed(1)}% in ${lookback.name}`,
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
