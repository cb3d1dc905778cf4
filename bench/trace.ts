/**
 * Bench-only instrumentation: times the engine's per-batch I/O without touching runtime/ — the transactional
 * producer's calls (begin, send, sendBatch, sendOffsets, commit, abort) and Redis EVALs (state read and apply) —
 * by wrapping kafkajs' and ioredis' prototypes in this process. Costs a few microseconds per call.
 *
 * Latencies of concurrent partitions overlap, so sums are not wall time; the means say what one batch waits for.
 */
import { Kafka, type ProducerConfig, type Transaction } from 'kafkajs';
import { Redis } from 'ioredis';

export interface OperationStats {
  calls: number;
  totalMs: number;
  meanMs: number;
  maxMs: number;
}

const stats = new Map<string, { calls: number; totalMs: number; maxMs: number }>();
let installed = false;

function record(name: string, ms: number): void {
  const s = stats.get(name) ?? { calls: 0, totalMs: 0, maxMs: 0 };
  s.calls += 1;
  s.totalMs += ms;
  if (ms > s.maxMs) s.maxMs = ms;
  stats.set(name, s);
}

async function timed<T>(name: string, work: () => Promise<T>): Promise<T> {
  const started = performance.now();
  try {
    return await work();
  } finally {
    record(name, performance.now() - started);
  }
}

const TXN_METHODS = ['send', 'sendBatch', 'sendOffsets', 'commit', 'abort'] as const;

export function installTracing(): void {
  if (installed) return;
  installed = true;
  const producer = Kafka.prototype.producer;
  Kafka.prototype.producer = function tracedProducer(this: Kafka, config?: ProducerConfig) {
    const p = producer.call(this, config);
    if (!config?.transactionalId) return p;
    const begin = p.transaction.bind(p);
    p.transaction = async (): Promise<Transaction> => {
      const txn = await timed('kafka txn begin', begin);
      const methods = txn as unknown as Record<(typeof TXN_METHODS)[number], (...args: unknown[]) => Promise<unknown>>;
      for (const method of TXN_METHODS) {
        const call = methods[method].bind(txn);
        methods[method] = (...args: unknown[]) => timed(`kafka txn ${method}`, () => call(...args));
      }
      return txn;
    };
    return p;
  };
  const evaluate = Redis.prototype.eval as unknown as (this: Redis, ...args: unknown[]) => Promise<unknown>;
  (Redis.prototype as unknown as { eval: (...args: unknown[]) => Promise<unknown> }).eval = function tracedEval(
    this: Redis,
    ...args: unknown[]
  ) {
    // The store's two scripts: the read one ranges over the due set.
    const name = String(args[0]).includes('ZRANGEBYSCORE') ? 'redis state read (EVAL)' : 'redis state apply (EVAL)';
    return timed(name, () => evaluate.apply(this, args));
  };
}

/** What was recorded since the last call, and a fresh start. */
export function takeTrace(): Record<string, OperationStats> {
  const out: Record<string, OperationStats> = {};
  for (const [name, s] of stats)
    out[name] = {
      calls: s.calls,
      totalMs: Math.round(s.totalMs),
      meanMs: Math.round((s.totalMs / s.calls) * 100) / 100,
      maxMs: Math.round(s.maxMs * 10) / 10,
    };
  stats.clear();
  return out;
}
