/**
 * Feeds records to the windowing functions the way the runtime does: stream time rises with each record, windows
 * close as stream time passes them, and the state goes through JSON between calls (as it does through Redis).
 */
import {
  addRecord,
  closeWindows,
  type AddRecordResult,
  type KeyWindowState,
  type WindowedAggregation,
  type WindowResult,
} from '../../../runtime/windows/index.ts';
import { mulberry32 } from '../../support/events.ts';

export interface Step<A> {
  timestamp: number;
  streamTime: number;
  result: AddRecordResult<A>;
  closed: WindowResult<A>[];
}

export interface Run<A> {
  steps: Step<A>[];
  /** Every final result, in the order the windows closed. */
  closed: WindowResult<A>[];
  late: number[];
  state: KeyWindowState<A> | undefined;
  streamTime: number;
}

/** `records` are [timestamp, value] pairs. `flushAt` closes everything due by then after the last record. */
export function drive<V, A>(
  spec: WindowedAggregation<V, A>,
  records: ReadonlyArray<readonly [number, V]>,
  options: { closeAsStreamTimeAdvances?: boolean; flushAt?: number } = {},
): Run<A> {
  const closeAsStreamTimeAdvances = options.closeAsStreamTimeAdvances ?? true;
  let state: KeyWindowState<A> | undefined;
  let streamTime = 0;
  const steps: Step<A>[] = [];
  const closed: WindowResult<A>[] = [];
  const late: number[] = [];
  for (const [timestamp, value] of records) {
    streamTime = Math.max(streamTime, timestamp);
    const result = addRecord(spec, state, value, timestamp, streamTime);
    if (result.late) late.push(timestamp);
    state = roundTrip(result.state);
    let closedNow: WindowResult<A>[] = [];
    if (closeAsStreamTimeAdvances) {
      const c = closeWindows(spec, state, streamTime);
      closedNow = c.closed;
      state = roundTrip(c.state);
    }
    closed.push(...closedNow);
    steps.push({ timestamp, streamTime, result, closed: closedNow });
  }
  if (options.flushAt !== undefined) {
    const c = closeWindows(spec, state, options.flushAt);
    closed.push(...c.closed);
    state = roundTrip(c.state);
  }
  return { steps, closed, late, state, streamTime };
}

export function roundTrip<T>(value: T): T {
  return value === undefined ? value : (JSON.parse(JSON.stringify(value)) as T);
}

/** A small deterministic PRNG, so the property tests replay exactly. */
export const random = mulberry32;

export function shuffle<T>(items: readonly T[], next: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i -= 1) {
    const j = Math.floor(next() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** Recursively freezes a value, so a test fails if a function under test mutates its input. */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}
