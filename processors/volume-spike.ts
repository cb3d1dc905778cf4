/**
 * volume-spike: traded volume per minute against the symbol's own rolling baseline (an exponentially weighted
 * mean of earlier minutes). A minute is judged when the first trade of a later minute arrives.
 */
import { store, type ProcessorContext, type StreamRecord } from '../runtime/index.ts';
import type { Trade } from '../schemas/generated/types.ts';
import { finding, type FindingTopic, type Severity } from './finding.ts';

export interface VolumeSpikeOptions {
  output: FindingTopic;
  bucketMs: number;
  /** Weight of the newest minute in the baseline. */
  alpha: number;
  /** Minutes of history before judging. */
  warmup: number;
  /**
   * A silence longer than this many minutes (a closed market, a halted symbol, a fleet restarted hours later) ends
   * the baseline: the symbol warms up again rather than judging its first minute against a baseline decayed to
   * nearly nothing.
   */
  resetAfter: number;
  /** Multiples of the baseline for medium, high and critical. */
  medium: number;
  high: number;
  critical: number;
}

export const defaultVolumeSpikeOptions: Omit<VolumeSpikeOptions, 'output'> = {
  bucketMs: 60_000,
  alpha: 0.2,
  warmup: 5,
  resetAfter: 10,
  medium: 3,
  high: 5,
  critical: 10,
};

interface VolumeState {
  bucket: number;
  volume: number;
  trades: number;
  baseline: number;
  minutes: number;
}

/** Per symbol: the minute being counted and the baseline. */
export const volumeStore = store<VolumeState>('volume');

export function volumeSpike(options: VolumeSpikeOptions) {
  return (record: StreamRecord<Trade>, ctx: ProcessorContext): void => {
    const trade = record.value;
    if (!(trade.quantity >= 0)) throw new Error(`quantity ${trade.quantity} of ${trade.symbol} is negative`);
    const store = ctx.store(volumeStore);
    const t = record.timestamp;
    const bucket = t - (t % options.bucketMs);
    let state = store.get();
    if (!state) state = { bucket, volume: 0, trades: 0, baseline: 0, minutes: 0 };
    if (bucket < state.bucket) {
      // A trade for a minute already judged: counted nowhere rather than reopening it.
      return;
    }
    if (bucket > state.bucket) {
      const multiple = state.baseline > 0 ? state.volume / state.baseline : 0;
      const severity: Severity | undefined =
        state.minutes >= options.warmup
          ? multiple >= options.critical
            ? 'critical'
            : multiple >= options.high
              ? 'high'
              : multiple >= options.medium
                ? 'medium'
                : undefined
          : undefined;
      if (severity) {
        ctx.forward(options.output, {
          key: trade.symbol,
          value: finding(
            {
              agent: 'volume-spike',
              rule: 'volume-multiple',
              symbol: trade.symbol,
              severity,
              windowStart: state.bucket,
              windowEnd: state.bucket + options.bucketMs,
              eventTime: t,
              evidence: { volume: state.volume, baseline: state.baseline, multiple, trades: state.trades },
              summary: `${trade.symbol} traded ${multiple.toFixed(1)}× its usual volume in one minute`,
            },
            record,
          ),
        });
      }
      // Quiet minutes in between count as zero volume in the baseline; a long silence starts it again.
      const gaps = (bucket - state.bucket) / options.bucketMs - 1;
      if (gaps > options.resetAfter) {
        state = { bucket, volume: 0, trades: 0, baseline: 0, minutes: 0 };
      } else {
        let baseline =
          state.minutes === 0 ? state.volume : options.alpha * state.volume + (1 - options.alpha) * state.baseline;
        for (let i = 0; i < gaps; i += 1) baseline *= 1 - options.alpha;
        state = { bucket, volume: 0, trades: 0, baseline, minutes: state.minutes + 1 + gaps };
      }
    }
    state.volume += trade.quantity;
    state.trades += 1;
    store.set(state);
  };
}
