/**
 * Runtime throughput benchmark on the real local stack (not part of the test run; see BENCHMARKS.md).
 *
 *   npx tsx bench/runtime.ts [--events N] [--phases baseline,baseline-chunked,router,windowed] [--concurrency K]
 *                            [--profile DIR] [--trade-share F] [--label TEXT] [--keep] [--no-write]
 *   npx tsx bench/runtime.ts --phases latency-baseline,latency [--latency-rate 5000] [--latency-seconds 30] …
 *
 * One run, one broker, fresh uniquely named topics and groups:
 *   1. registers the schemas and produces N market events (PriceTick and Trade, keyed by ~100 symbols) and N test
 *      Events (agentstreams.test.Event) to two 6-partition topics, before anything is measured;
 *   2. baseline: raw kafkajs consume→produce pass-through (eachBatch, one send per batch, acks -1, no transactions);
 *      baseline-chunked: the same, but each batch is sent in sequential sends of at most 2,000 messages (see
 *      BENCHMARKS.md: kafkajs 2.2.4 groups a send's messages in O(n²) and a 1 MiB batch exceeds the broker's
 *      1 MiB message.max.bytes, so one send per fetched batch is not what raw kafkajs can do);
 *   3. router: the engine (`runProcessor`, one instance in this process) routing PriceTick/Trade to two topics;
 *   4. windowed: the engine running the tumbling-1m windowed count of test/fixtures/topologies/window-count.ts;
 *   5. latency-baseline / latency (not in the default set): a paced producer sends market events at a steady rate
 *      (default 5,000/s for 5 s of warm-up + 30 s) to a fresh input topic, each record stamped with its send time
 *      (Kafka timestamp, and a `bench.sent` header in µs) and a sequence number (`bench.seq`); a read_committed
 *      consumer on the output topics records receive time − send time per record. `latency` routes through the
 *      engine's router (`runProcessor`, exactly-once: a transaction per AS_COMMIT_INTERVAL_MS); `latency-baseline` through
 *      a raw kafkajs consume→produce pass-through (no transactions). Every sent record must be received exactly
 *      once, or the phase fails;
 *   6. peers (bench/peers/, asked for by name): kstreams-router / kstreams-windowed / quix-router / quix-windowed run
 *      Kafka Streams and Quix Streams as child processes on the same input topics as router / windowed, timed from
 *      their first processed record to their group's lag 0, outputs verified read_committed; kstreams-latency runs
 *      Kafka Streams' router in the latency phase;
 * then prints a table with the bars of ARCHITECTURE §7 and writes bench/results/<ISO date>.json.
 *
 * Every phase has a deadline; whatever happens, the script stops what it started, deletes its topics, groups and
 * Redis keys (unless --keep) and exits.
 */
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { logLevel, type IHeaders, type Message } from 'kafkajs';
import type { KafkaAdmin, KafkaClientName, KafkaPort } from '../runtime/kafka/port.ts';
import { kafkaClient } from '../runtime/kafka/client.ts';
import { Redis } from 'ioredis';
import { loadConfig, type Config } from '../runtime/config/index.ts';
import { runProcessor, type ProcessorHandle } from '../runtime/engine/runner.ts';
import { AvroSerde, registryClient } from '../runtime/serde/avro.ts';
import { loadSchemas, registerSchemas } from '../runtime/serde/schemas.ts';
import { defineTopology, router, type Topology } from '../runtime/topology/topology.ts';
import { createMetrics } from '../runtime/observability/metrics.ts';
import { windowCountTopology } from '../test/fixtures/topologies/window-count.ts';
import { installTracing, takeTrace, type OperationStats } from './trace.ts';
import { ensureKStreamsPeer, KSTREAMS_VERSION, startKStreamsPeer } from './peers/kstreams.ts';
import type { PeerProcess } from './peers/process.ts';
import { ensureQuixPeer, quixVersion, startQuixPeer } from './peers/quix.ts';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');

const PHASES = [
  'baseline',
  'baseline-chunked',
  'router',
  'windowed',
  'latency-baseline',
  'latency',
  // The engine on the other clients behind the port (AS_KAFKA_CLIENT): the same workloads, their own topics and groups.
  'router-platformatic',
  'windowed-platformatic',
  'latency-platformatic',
  'router-confluent',
  'windowed-confluent',
  'latency-confluent',
  // Peers (bench/peers/), asked for by name: Kafka Streams and Quix Streams on the same input as router/windowed.
  'kstreams-router',
  'kstreams-windowed',
  'kstreams-latency',
  'quix-router',
  'quix-windowed',
] as const;
const PEER_PHASES = [
  'kstreams-router',
  'kstreams-windowed',
  'kstreams-latency',
  'quix-router',
  'quix-windowed',
] as const;
/** What runs without --phases: the throughput phases (the latency ones take ~1.5 min more and are asked for by name). */
const DEFAULT_PHASES = ['baseline', 'baseline-chunked', 'router', 'windowed'] as const;
const BASELINES = ['baseline', 'baseline-chunked'] as const;
const LATENCY_PHASES = ['latency-baseline', 'latency', 'kstreams-latency'] as const;
const isLatencyPhase = (p: string): boolean => (LATENCY_PHASES as readonly string[]).includes(p);
/** Largest send of the chunked baseline. */
const CHUNK = 2_000;
type PhaseName = (typeof PHASES)[number];

const BARS = { routerEps: 50_000, windowedEps: 25_000, ratio: 0.6 } as const;

// ---------------------------------------------------------------------------------------------------------------
// Arguments

const { values: args } = parseArgs({
  options: {
    events: { type: 'string', default: '200000' },
    phases: { type: 'string', default: DEFAULT_PHASES.join(',') },
    concurrency: { type: 'string' },
    'trade-share': { type: 'string', default: String(1 / 3) },
    'pad-bytes': { type: 'string', default: '0' },
    'phase-timeout': { type: 'string', default: '180' },
    'baseline-timeout': { type: 'string', default: '60' },
    'latency-rate': { type: 'string', default: '5000' },
    'latency-seconds': { type: 'string', default: '30' },
    'latency-warmup': { type: 'string', default: '5' },
    'latency-tick-ms': { type: 'string', default: '5' },
    'latency-drain': { type: 'string', default: '30' },
    'kstreams-commit-interval-ms': { type: 'string' },
    'quix-commit-interval': { type: 'string', default: '5' },
    profile: { type: 'string' },
    label: { type: 'string', default: '' },
    keep: { type: 'boolean', default: false },
    'quiet-wait': { type: 'string', default: '120' },
    'no-trace': { type: 'boolean', default: false },
    'no-write': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});

if (args.help) {
  console.log(`npx tsx bench/runtime.ts [options]
  --events N            events per input topic (default 200000)
  --phases LIST         any of baseline,baseline-chunked,router,windowed,latency-baseline,latency,
                        kstreams-router,kstreams-windowed,kstreams-latency,quix-router,quix-windowed
                        (default baseline,baseline-chunked,router,windowed; the peers are built or installed on first use)
  --concurrency K       partitionsConsumedConcurrently for every phase (default: the runner's, min(partitions, 6))
  --phase-timeout S     deadline per phase in seconds (default 180)
  --baseline-timeout S  deadline of the one-send-per-batch baseline (default 60: with kafkajs 2.2.4 it can livelock)
  --latency-rate R      latency phases: events/s sent by the paced producer (default 5000)
  --latency-seconds S   latency phases: measured sending time (default 30)
  --latency-warmup S    latency phases: sending time before it, checked but left out of the percentiles (default 5)
  --latency-tick-ms T   latency phases: the producer sends what is due every T ms (default 5)
  --latency-drain S     latency phases: after the last send, wait up to S s for every record (default 30)
  --kstreams-commit-interval-ms N  Kafka Streams' commit.interval.ms (default: its own, 100 ms under exactly_once_v2)
  --quix-commit-interval S  Quix Streams' commit_interval in seconds (default 5, its own default)
  --trade-share F       fraction of market events that are Trades, 0..1 (default 1/3); 0 routes everything to one topic
  --pad-bytes B         pad each PriceTick's venue with B bytes (default 0): bigger records for the router
  --profile DIR         write one V8 CPU profile per measured phase to DIR (numbers then carry profiler overhead)
  --label TEXT          free text stored with the results (e.g. the knob being tried)
  --keep                keep topics, groups and Redis keys after the run
  --quiet-wait S        before each phase, wait up to S seconds (default 120; 0 = never) until other processes use
                        < 0.15 cores, so that other work on the machine does not distort the phase
  --no-write            print only; do not write bench/results/*.json
  --no-trace            do not time the engine's transaction calls and Redis EVALs (bench/trace.ts)
Environment: the usual AS_* settings (e.g. AS_CONSUMER_MAX_BYTES_PER_PARTITION) apply to every phase.`);
  process.exit(0);
}

function positiveInt(name: string, raw: string): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`--${name} must be a whole number >= 1, got "${raw}"`);
    process.exit(2);
  }
  return n;
}

const EVENTS = positiveInt('events', args.events);
const PHASE_TIMEOUT_MS = positiveInt('phase-timeout', args['phase-timeout']) * 1000;
const BASELINE_TIMEOUT_MS = Math.min(
  PHASE_TIMEOUT_MS,
  positiveInt('baseline-timeout', args['baseline-timeout']) * 1000,
);
const CONCURRENCY = args.concurrency === undefined ? undefined : positiveInt('concurrency', args.concurrency);
const TRADE_SHARE = Number(args['trade-share']);
if (!(TRADE_SHARE >= 0 && TRADE_SHARE <= 1)) {
  console.error(`--trade-share must be a number from 0 to 1, got "${args['trade-share']}"`);
  process.exit(2);
}
const PAD_BYTES = Number(args['pad-bytes']);
if (!Number.isInteger(PAD_BYTES) || PAD_BYTES < 0) {
  console.error(`--pad-bytes must be a whole number >= 0, got "${args['pad-bytes']}"`);
  process.exit(2);
}
function nonNegative(name: string, raw: string): number {
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) {
    console.error(`--${name} must be a number >= 0, got "${raw}"`);
    process.exit(2);
  }
  return n;
}
const LATENCY = {
  rate: positiveInt('latency-rate', args['latency-rate']),
  seconds: positiveInt('latency-seconds', args['latency-seconds']),
  warmupSeconds: nonNegative('latency-warmup', args['latency-warmup']),
  tickMs: positiveInt('latency-tick-ms', args['latency-tick-ms']),
  drainMs: positiveInt('latency-drain', args['latency-drain']) * 1000,
};
/** Rough length of a latency phase (joins, sending, drain, grace), for the watchdog; each step has its own deadline. */
const LATENCY_PHASE_MS = 60_000 + (LATENCY.warmupSeconds + LATENCY.seconds) * 1000 + LATENCY.drainMs + 10_000;
const KSTREAMS_COMMIT_INTERVAL_MS =
  args['kstreams-commit-interval-ms'] === undefined
    ? undefined
    : positiveInt('kstreams-commit-interval-ms', args['kstreams-commit-interval-ms']);
const QUIX_COMMIT_INTERVAL_S = Number(args['quix-commit-interval']);
if (!(QUIX_COMMIT_INTERVAL_S > 0)) {
  console.error(`--quix-commit-interval must be a number of seconds > 0, got "${args['quix-commit-interval']}"`);
  process.exit(2);
}
const PARTITIONS = 6;
const SYMBOLS = 100;
const phases = args.phases
  .split(',')
  .map((p) => p.trim())
  .filter((p) => p !== '');
for (const p of phases) {
  if (!(PHASES as readonly string[]).includes(p)) {
    console.error(`--phases: unknown phase "${p}"; choose from ${PHASES.join(', ')}`);
    process.exit(2);
  }
}
const wanted = new Set(phases as PhaseName[]);

// ---------------------------------------------------------------------------------------------------------------
// Input data

/** Small seeded PRNG so that every run produces the same input. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function symbolsOf(count: number, random: () => number): string[] {
  const out = new Set<string>();
  while (out.size < count) {
    const length = 3 + Math.floor(random() * 2);
    let s = '';
    for (let i = 0; i < length; i += 1) s += String.fromCharCode(65 + Math.floor(random() * 26));
    out.add(s);
  }
  return [...out];
}

const START = Date.UTC(2026, 0, 1);

/** N market events, by default about 2/3 PriceTick and 1/3 Trade, 5 ms of event time apart, keyed by symbol. */
function marketEvents(serde: AvroSerde, count: number): Message[] {
  const random = prng(42);
  const symbols = symbolsOf(SYMBOLS, random);
  const venue = `XNAS${'.'.repeat(PAD_BYTES)}`;
  const messages: Message[] = new Array<Message>(count);
  for (let i = 0; i < count; i += 1) {
    const symbol = symbols[Math.floor(random() * symbols.length)]!;
    const eventTime = START + i * 5;
    const price = Math.round((50 + random() * 100) * 100) / 100;
    const value =
      random() >= TRADE_SHARE
        ? serde.encode('agentstreams.market.PriceTick', {
            symbol,
            eventTime,
            price,
            bid: price - 0.01,
            ask: price + 0.01,
            currency: 'USD',
            venue,
          })
        : serde.encode('agentstreams.market.Trade', {
            symbol,
            eventTime,
            price,
            quantity: 1 + Math.floor(random() * 500),
            side: random() < 0.5 ? 'BUY' : 'SELL',
            tradeId: `t${i}`,
          });
    messages[i] = { key: symbol, value };
  }
  return messages;
}

/** N test Events keyed by symbol, 10 ms of event time apart, in order (no late records): ~N/6000 windows per key. */
function testEvents(serde: AvroSerde, count: number): Message[] {
  const random = prng(7);
  const symbols = symbolsOf(SYMBOLS, random);
  const messages: Message[] = new Array<Message>(count);
  for (let i = 0; i < count; i += 1) {
    const key = symbols[Math.floor(random() * symbols.length)]!;
    messages[i] = {
      key,
      value: serde.encode('agentstreams.test.Event', {
        key,
        eventTime: START + i * 10,
        amount: Math.floor(random() * 100),
      }),
    };
  }
  return messages;
}

/** Sequential sends of large chunks: keeps per-partition order (the windowed input must not be reordered). */
async function produceAll(
  kafka: KafkaPort,
  topic: string,
  messages: Message[],
): Promise<{ ms: number; bytes: number }> {
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  const started = performance.now();
  let bytes = 0;
  try {
    const chunk = 2_000;
    for (let i = 0; i < messages.length; i += chunk) {
      const slice = messages.slice(i, i + chunk);
      for (const m of slice) bytes += (m.value as Buffer).length + String(m.key).length;
      await producer.send({ topic, acks: -1, messages: slice });
    }
  } finally {
    await producer.disconnect();
  }
  return { ms: performance.now() - started, bytes };
}

// ---------------------------------------------------------------------------------------------------------------
// Measurement helpers

/** Records still to be processed by a group: end offsets minus committed offsets, summed over partitions. */
async function lagOf(admin: KafkaAdmin, groupId: string, topic: string): Promise<number> {
  const [ends, committed] = await Promise.all([
    admin.fetchTopicOffsets(topic),
    admin.fetchOffsets({ groupId, topics: [topic] }),
  ]);
  const byPartition = new Map((committed[0]?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
  let lag = 0;
  for (const end of ends) {
    const at = byPartition.get(end.partition) ?? -1;
    lag += Math.max(0, Number(end.high) - (at >= 0 ? at : 0));
  }
  return lag;
}

/** CPU time (user+system, ms) of the stack's processes, read from /proc, so each phase can say who was busy. */
const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

function stackPids(config: Config): Record<string, number> {
  const dir = isAbsolute(config.stack.dir) ? config.stack.dir : join(root, config.stack.dir);
  const out: Record<string, number> = {};
  for (const service of ['kafka', 'redis', 'registry', 'clickhouse']) {
    const file = join(dir, service, `${service}.pid`);
    if (!existsSync(file)) continue;
    const pid = Number(readFileSync(file, 'utf8').trim());
    if (Number.isInteger(pid) && pid > 0 && existsSync(`/proc/${pid}/stat`)) out[service] = pid;
  }
  return out;
}

function procCpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}

/** Busy CPU time of the whole machine (all cores, ms), from /proc/stat. */
function machineCpuMs(): number | undefined {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal …: busy = all but idle and iowait.
    const busy = fields.slice(0, 8).reduce((a, b) => a + b, 0) - (fields[3] ?? 0) - (fields[4] ?? 0);
    return (busy * 1000) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}

interface CpuSnapshot {
  at: number;
  self: NodeJS.CpuUsage;
  machine: number | undefined;
  stack: Record<string, number | undefined>;
}

function cpuSnapshot(pids: Record<string, number>): CpuSnapshot {
  const stack: Record<string, number | undefined> = {};
  for (const [name, pid] of Object.entries(pids)) stack[name] = procCpuMs(pid);
  return { at: performance.now(), self: process.cpuUsage(), machine: machineCpuMs(), stack };
}

const QUIET_WAIT_MS = Number(args['quiet-wait']) * 1000;

/**
 * Waits until the machine is quiet: over 2 s, processes other than this one and the stack used < 0.15 cores.
 * Returns the waited ms and the last "others" reading; gives up (and says so in the results) after --quiet-wait.
 */
async function waitQuiet(pids: Record<string, number>): Promise<{ waitedMs: number; othersCores: number }> {
  const started = performance.now();
  let others: number;
  do {
    const a = cpuSnapshot(pids);
    await sleep(2_000);
    others = coresBetween(a, cpuSnapshot(pids)).others ?? 0;
    if (others < 0.15) break;
  } while (performance.now() - started < QUIET_WAIT_MS);
  return { waitedMs: Math.round(performance.now() - started), othersCores: others };
}

/** Cores used by each process between two snapshots (1.0 = one core busy the whole time). */
function coresBetween(a: CpuSnapshot, b: CpuSnapshot): Record<string, number> {
  const wall = b.at - a.at;
  const out: Record<string, number> = {};
  const self = b.self.user - a.self.user + (b.self.system - a.self.system);
  out.bench = round(self / 1000 / wall, 2);
  for (const [name, before] of Object.entries(a.stack)) {
    const after = b.stack[name];
    if (before !== undefined && after !== undefined) out[name] = round((after - before) / wall, 2);
  }
  if (a.machine !== undefined && b.machine !== undefined) {
    out.machine = round((b.machine - a.machine) / wall, 2);
    // Whatever else ran on the machine meanwhile (other test runs, the OS): the noise floor of this phase.
    out.others = round(
      Math.max(
        0,
        out.machine -
          Object.entries(out)
            .filter(([k]) => k !== 'machine')
            .reduce((n, [, v]) => n + v, 0),
      ),
      2,
    );
  }
  return out;
}

function round(n: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

function eps(events: number, ms: number | null): number | null {
  return ms === null || ms <= 0 ? null : Math.round(events / (ms / 1000));
}

/** Resolves with `promise` or rejects after `ms`, so that no phase can hang the run. */
async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${Math.round(ms / 1000)} s`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** One V8 CPU profile per measured phase, taken in-process so that set-up and production stay out of it. */
class PhaseProfiler {
  private session: Session | undefined;

  constructor(private readonly dir: string | undefined) {
    if (dir) mkdirSync(dir, { recursive: true });
  }

  get enabled(): boolean {
    return this.dir !== undefined;
  }

  async start(): Promise<void> {
    if (!this.dir) return;
    this.session = new Session();
    this.session.connect();
    await this.session.post('Profiler.enable');
    await this.session.post('Profiler.setSamplingInterval', { interval: 500 });
    await this.session.post('Profiler.start');
  }

  async stop(name: string): Promise<string | undefined> {
    if (!this.dir || !this.session) return undefined;
    const { profile } = await this.session.post('Profiler.stop');
    this.session.disconnect();
    this.session = undefined;
    const file = join(this.dir, `${name}-${new Date().toISOString().replaceAll(':', '-')}.cpuprofile`);
    writeFileSync(file, JSON.stringify(profile));
    return file;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Phases

interface PhaseResult {
  phase: PhaseName;
  status: 'ok' | 'timeout' | 'error';
  error?: string;
  events: number;
  /** Records done when the phase ended (equal to `events` when it finished). */
  processed: number;
  /** Start of the phase (before connecting) → member joined its group. */
  joinMs: number | null;
  /** Start → first non-empty batch in eachBatch (baseline only: the engine does not expose it). */
  firstFetchMs: number | null;
  /** Start → the phase's own counter reached N (baseline: last send acknowledged; engine: stats.records, 5 ms poll). */
  processedMs: number | null;
  /** Start → admin saw the group's committed offsets at the end offsets (100 ms poll). */
  caughtUpMs: number | null;
  eps: {
    /** The bar's measure: baseline first fetch → last produced; engine start → lag 0 (join included). */
    headline: number | null;
    /** Start (before connecting) → lag 0 (baseline: → last produced); join included. */
    total: number | null;
    /** Join → lag 0 (baseline: → last produced). */
    afterJoin: number | null;
  };
  cores: Record<string, number>;
  details: Record<string, number | string>;
  /** Engine phases: latency of the per-batch I/O calls (bench/trace.ts) and of whole batches (the runtime's metric). */
  trace?: Record<string, OperationStats>;
  /** How long the phase waited for a quiet machine, and how busy others were when it started. */
  quiet?: { waitedMs: number; othersCores: number };
  profile?: string;
  /** Latency phases only. */
  latency?: LatencyResult;
}

/** Receive time − send time over a set of records, in ms (nearest-rank percentiles). */
interface LatencyStats {
  count: number;
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

interface LatencyResult {
  targetRate: number;
  warmupSeconds: number;
  seconds: number;
  tickMs: number;
  /** Records acknowledged by the broker to the paced producer (warm-up included). */
  sent: number;
  /** Distinct records received by the read_committed probe. */
  received: number;
  /** Receipts beyond the first of a record. */
  duplicates: number;
  missing: number;
  /** Records on the output topics without a sequence number of this run. */
  unexpected: number;
  /** Measured part: records / (last send time − first send time), events/s. */
  achievedRate: number;
  /** How far the producer's sends fell behind its schedule (send time − scheduled time of the record), ms. */
  behindScheduleMs: { mean: number; max: number };
  /** Producer send() call → broker acknowledgement (acks -1), ms. */
  sendAckMs: { mean: number; max: number };
  /** Records sent after the warm-up: the headline. */
  measured: LatencyStats;
  /** Every record, warm-up included. */
  all: LatencyStats;
}

interface Context {
  /** The configuration the engine phases run with: the client is chosen per phase (`withClient`). */
  config: Config;
  kafka: KafkaPort;
  admin: KafkaAdmin;
  pids: Record<string, number>;
  profiler: PhaseProfiler;
  concurrency: number;
  serde: AvroSerde;
  stopping: () => boolean;
}

/** `config` with the engine's Kafka client set to `client`, whatever AS_KAFKA_CLIENT says: each phase names its client. */
function withClient(config: Config, client: KafkaClientName): Config {
  return { ...config, kafka: { ...config.kafka, client } };
}

function emptyResult(phase: PhaseName, events = EVENTS): PhaseResult {
  return {
    phase,
    status: 'ok',
    events,
    processed: 0,
    joinMs: null,
    firstFetchMs: null,
    processedMs: null,
    caughtUpMs: null,
    eps: { headline: null, total: null, afterJoin: null },
    cores: {},
    details: {},
  };
}

/**
 * Raw kafkajs pass-through: what the engine is compared against. `chunk` 0 sends each fetched batch in one send;
 * otherwise in sequential sends of at most `chunk` messages (order kept).
 */
async function baselinePhase(
  ctx: Context,
  phase: PhaseName,
  input: string,
  output: string,
  groupId: string,
  chunk: number,
): Promise<PhaseResult> {
  const { config, kafka } = ctx;
  const result = emptyResult(phase);
  const consumer = kafka.consumer({
    groupId,
    readUncommitted: false,
    sessionTimeout: config.consumer.sessionTimeoutMs,
    heartbeatInterval: 1_000,
    rebalanceTimeout: 30_000,
    maxBytesPerPartition: config.consumer.maxBytesPerPartition,
    maxWaitTimeInMs: 100,
    retry: { retries: 10 },
  });
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  let batches = 0;
  let produced = 0;
  let sizes = 0;
  // Done means every partition forwarded up to its end offset: a re-delivered batch (kafkajs retries eachBatch after
  // a failed send) is counted as a duplicate, not as progress.
  const ends = new Map(
    (await ctx.admin.fetchTopicOffsets(input)).map((o) => [o.partition, { low: Number(o.low), high: Number(o.high) }]),
  );
  const forwardedTo = new Map<number, number>();
  const distinct = (): number =>
    [...ends].reduce((n, [p, { low }]) => n + Math.max(0, (forwardedTo.get(p) ?? low) - low), 0);
  const caughtUp = (): boolean => [...ends].every(([p, { low, high }]) => (forwardedTo.get(p) ?? low) >= high);
  let resolveDone: () => void = () => {};
  const done = new Promise<void>((r) => (resolveDone = r));
  await ctx.profiler.start();
  const before = cpuSnapshot(ctx.pids);
  const t0 = performance.now();
  let joins = 0;
  consumer.on(consumer.events.GROUP_JOIN, () => {
    joins += 1;
    result.joinMs ??= performance.now() - t0;
  });
  const errors = new Map<string, number>();
  consumer.on(consumer.events.CRASH, ({ payload }) =>
    errors.set(payload.error.message, (errors.get(payload.error.message) ?? 0) + 1),
  );
  try {
    await producer.connect();
    await consumer.connect();
    await consumer.subscribe({ topic: input, fromBeginning: true });
    await consumer.run({
      partitionsConsumedConcurrently: ctx.concurrency,
      eachBatch: async ({ batch, heartbeat }) => {
        if (batch.messages.length === 0) return;
        result.firstFetchMs ??= performance.now() - t0;
        try {
          const messages = batch.messages.map((m) => ({
            key: m.key,
            value: m.value,
            timestamp: m.timestamp,
            headers: m.headers,
          }));
          if (chunk === 0) await producer.send({ topic: output, acks: -1, messages });
          else
            for (let i = 0; i < messages.length; i += chunk)
              await producer.send({ topic: output, acks: -1, messages: messages.slice(i, i + chunk) });
        } catch (error) {
          // kafkajs retries the batch after a failed eachBatch; say why, so that a stuck phase explains itself.
          const message = `${(error as Error).name}: ${(error as Error).message}`;
          errors.set(message, (errors.get(message) ?? 0) + 1);
          throw error;
        }
        batches += 1;
        sizes += batch.messages.length;
        produced += batch.messages.length;
        forwardedTo.set(
          batch.partition,
          Math.max(forwardedTo.get(batch.partition) ?? 0, Number(batch.lastOffset()) + 1),
        );
        if (caughtUp() && result.processedMs === null) {
          result.processedMs = performance.now() - t0;
          resolveDone();
        }
        await heartbeat();
      },
    });
    await within(chunk === 0 ? BASELINE_TIMEOUT_MS : PHASE_TIMEOUT_MS, phase, done);
  } catch (error) {
    result.status = /did not finish/.test((error as Error).message) ? 'timeout' : 'error';
    result.error = (error as Error).message;
  } finally {
    const after = cpuSnapshot(ctx.pids);
    result.cores = coresBetween(before, after);
    result.profile = await ctx.profiler.stop(phase);
    await within(30_000, `${phase} stop`, consumer.disconnect()).catch(() => undefined);
    await within(30_000, `${phase} producer stop`, producer.disconnect()).catch(() => undefined);
  }
  result.processed = distinct();
  result.details = {
    batches,
    meanBatch: batches > 0 ? Math.round(sizes / batches) : 0,
    duplicates: produced - distinct(),
    joins,
    ...Object.fromEntries([...errors].map(([m, n]) => [`error: ${m}`, n])),
  };
  const done_ = result.processedMs;
  result.eps = {
    headline: done_ !== null && result.firstFetchMs !== null ? eps(EVENTS, done_ - result.firstFetchMs) : null,
    total: eps(EVENTS, done_),
    afterJoin: done_ !== null && result.joinMs !== null ? eps(EVENTS, done_ - result.joinMs) : null,
  };
  return result;
}

/** Runs one engine processor until its group has no lag on `input`. */
async function enginePhase(
  ctx: Context,
  phase: PhaseName,
  topology: Topology,
  processor: string,
  input: string,
  client: KafkaClientName,
  verify?: () => Promise<Record<string, number | string>>,
): Promise<PhaseResult> {
  const result = emptyResult(phase);
  const groupId = topology.groupId(processor);
  let handle: ProcessorHandle | undefined;
  const logs: Record<string, number> = {};
  const metrics = createMetrics({ processMetrics: false });
  takeTrace();
  await ctx.profiler.start();
  const before = cpuSnapshot(ctx.pids);
  const t0 = performance.now();
  let poll: NodeJS.Timeout | undefined;
  try {
    const started = runProcessor({
      config: withClient(ctx.config, client),
      topology,
      processor,
      concurrency: ctx.concurrency,
      metrics,
      log: (event, fields) => {
        logs[event] = (logs[event] ?? 0) + 1;
        // Keep what failed, once per distinct message, so that a stuck phase explains itself.
        if (event.endsWith('.error') && typeof fields?.message === 'string') {
          const key = `error: ${event} ${String(fields.code ?? '')} ${fields.message}`.slice(0, 240);
          logs[key] = (logs[key] ?? 0) + 1;
        }
      },
    });
    handle = await within(PHASE_TIMEOUT_MS, `${phase} start`, started);
    const h = handle;
    // `joined` resolves inside consumer.run(), before runProcessor returns; whichever we see first is the join.
    result.joinMs = performance.now() - t0;
    void h.joined.then(() => (result.joinMs = Math.min(result.joinMs ?? Infinity, performance.now() - t0)));
    poll = setInterval(() => {
      if (result.processedMs === null && h.stats.records >= EVENTS) result.processedMs = performance.now() - t0;
    }, 5);
    const deadline = t0 + PHASE_TIMEOUT_MS;
    let lag = EVENTS;
    while (true) {
      lag = await lagOf(ctx.admin, groupId, input);
      if (lag === 0) {
        result.caughtUpMs = performance.now() - t0;
        break;
      }
      if (performance.now() > deadline)
        throw new Error(`${phase} did not finish within ${PHASE_TIMEOUT_MS / 1000} s (lag ${lag})`);
      await sleep(100);
    }
  } catch (error) {
    result.status = /did not finish/.test((error as Error).message) ? 'timeout' : 'error';
    result.error = (error as Error).message;
  } finally {
    clearInterval(poll);
    const after = cpuSnapshot(ctx.pids);
    result.cores = coresBetween(before, after);
    result.profile = await ctx.profiler.stop(phase);
    if (handle)
      await within(30_000, `${phase} stop`, handle.stop()).catch((error: Error) =>
        console.error(`  ${phase}: ${error.message}`),
      );
  }
  if (result.processedMs === null && handle && handle.stats.records >= EVENTS) result.processedMs = result.caughtUpMs;
  const trace = takeTrace();
  const batch = (await metrics.batchDuration.get()).values;
  const sum = batch.find((v) => v.metricName?.endsWith('_sum'))?.value ?? 0;
  const count = batch.find((v) => v.metricName?.endsWith('_count'))?.value ?? 0;
  if (count > 0)
    trace['whole batch (handleBatch)'] = {
      calls: count,
      totalMs: Math.round(sum * 1000),
      meanMs: Math.round((sum / count) * 100_000) / 100,
      maxMs: NaN,
    };
  if (Object.keys(trace).length > 0) result.trace = trace;
  result.processed = handle?.stats.records ?? 0;
  const s = handle?.stats;
  result.details = {
    batches: s?.batches ?? 0,
    meanBatch: s && s.batches > 0 ? Math.round(s.records / s.batches) : 0,
    deadLettered: s?.deadLettered ?? 0,
    late: s?.late ?? 0,
    recoveries: s?.recoveries ?? 0,
    ...Object.fromEntries(Object.entries(logs).map(([k, v]) => [k.startsWith('error') ? k : `log.${k}`, v])),
  };
  if (verify && result.status === 'ok') {
    try {
      Object.assign(result.details, await verify());
    } catch (error) {
      result.status = 'error';
      result.error = (error as Error).message;
    }
  }
  result.details = { client, ...result.details };
  const end = result.caughtUpMs;
  result.eps = {
    headline: eps(EVENTS, end),
    total: eps(EVENTS, end),
    afterJoin: end !== null && result.joinMs !== null ? eps(EVENTS, end - result.joinMs) : null,
  };
  return result;
}

// ---------------------------------------------------------------------------------------------------------------
// Peers (bench/peers/): Kafka Streams and Quix Streams as child processes on the same input

interface PeerRun {
  start: () => PeerProcess;
  /** The peer's consumer group (Kafka Streams: its application.id). */
  groupId: string;
  input: string;
  /** Reads the peer's output read_committed after it stopped; throws when it is not what the input implies. */
  verify: () => Promise<Record<string, number | string>>;
}

/**
 * Starts a peer, measures from its first processed input record (it prints the time) to its group's lag reaching 0
 * (committed offsets at the input's end offsets: under exactly-once they are committed with the outputs), stops it by
 * pid and verifies what it wrote.
 */
async function peerPhase(ctx: Context, phase: PhaseName, run: PeerRun): Promise<PhaseResult> {
  const result = emptyResult(phase);
  let peer: PeerProcess | undefined;
  let pids = ctx.pids;
  let before: CpuSnapshot | undefined;
  const t0 = performance.now();
  try {
    peer = run.start();
    pids = { ...ctx.pids, peer: peer.pid };
    before = cpuSnapshot(pids);
    const deadline = t0 + PHASE_TIMEOUT_MS;
    while (true) {
      const exit = peer.exited();
      if (exit !== undefined)
        throw new Error(`${phase}: the peer exited (${exit}) before its group caught up:\n${peer.stderrTail()}`);
      const lag = await lagOf(ctx.admin, run.groupId, run.input);
      if (lag === 0 && peer.firstRecordAt() !== undefined) {
        result.caughtUpMs = performance.now() - t0;
        break;
      }
      if (performance.now() > deadline)
        throw new Error(`${phase} did not finish within ${PHASE_TIMEOUT_MS / 1000} s (lag ${lag})`);
      await sleep(100);
    }
  } catch (error) {
    result.status = /did not finish/.test((error as Error).message) ? 'timeout' : 'error';
    result.error = (error as Error).message;
  } finally {
    if (before) result.cores = coresBetween(before, cpuSnapshot(pids));
    if (peer)
      await within(40_000, `${phase} stop`, peer.stop(30_000)).catch((error: Error) =>
        console.error(`  ${phase}: ${error.message}`),
      );
  }
  const first = peer?.firstRecordAt();
  result.firstFetchMs = first === undefined ? null : first - t0;
  if (result.status === 'ok') {
    result.processed = EVENTS;
    try {
      result.details = await run.verify();
    } catch (error) {
      result.status = 'error';
      result.error = (error as Error).message;
    }
  }
  const end = result.caughtUpMs;
  result.eps = {
    // First record processed → lag 0: the peer's start-up and group join are left out (see afterJoin of ours).
    headline: end !== null && result.firstFetchMs !== null ? eps(EVENTS, end - result.firstFetchMs) : null,
    total: eps(EVENTS, end),
    afterJoin: null,
  };
  return result;
}

/**
 * Reads `topics` from the beginning with a read_committed consumer, calling `onRecord` for each record, until the
 * reading group's committed offsets reach the end offsets. kafkajs does not always commit past the transaction markers
 * at the very end of a partition (a peer's last commit marker, and the abort marker of the empty transaction it may
 * close on shutdown), so the end is also taken as reached when no record has arrived for 3 s and no partition is
 * more than 2 offsets short of its end.
 */
async function readCommitted(
  ctx: Context,
  groupId: string,
  topics: string[],
  onRecord: (topic: string, key: Buffer | null, value: Buffer | null) => Promise<void> | void,
): Promise<void> {
  const consumer = ctx.kafka.consumer({
    groupId,
    readUncommitted: false,
    maxWaitTimeInMs: 100,
    sessionTimeout: 30_000,
    heartbeatInterval: 1_000,
  });
  let lastRecordAt = performance.now();
  try {
    await consumer.connect();
    for (const topic of topics) await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      autoCommitInterval: 100,
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) await onRecord(batch.topic, m.key, m.value);
        if (batch.messages.length > 0) lastRecordAt = performance.now();
      },
    });
    const deadline = performance.now() + 90_000;
    while (true) {
      let lag = 0;
      let widest = 0;
      for (const topic of topics) {
        const [ends, committed] = await Promise.all([
          ctx.admin.fetchTopicOffsets(topic),
          ctx.admin.fetchOffsets({ groupId, topics: [topic] }),
        ]);
        const at = new Map((committed[0]?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
        for (const end of ends) {
          const behind = Math.max(0, Number(end.high) - Math.max(Number(end.low), at.get(end.partition) ?? -1));
          lag += behind;
          widest = Math.max(widest, behind);
        }
      }
      if (lag === 0 || (widest <= 2 && performance.now() - lastRecordAt > 3_000)) break;
      if (performance.now() > deadline)
        throw new Error(`reading ${topics.join(', ')} read_committed did not reach the end within 90 s (lag ${lag})`);
      await sleep(200);
    }
  } finally {
    await within(30_000, 'verifier stop', consumer.disconnect()).catch(() => undefined);
  }
}

/** Router output check: each output topic holds exactly the input's records of its schema id, and nothing else. */
async function verifyRouted(
  ctx: Context,
  groupId: string,
  expected: Map<string, { schemaId: number; count: number }>,
): Promise<Record<string, number | string>> {
  const counts = new Map<string, number>();
  let misrouted = 0;
  await readCommitted(ctx, groupId, [...expected.keys()], (topic, _key, value) => {
    counts.set(topic, (counts.get(topic) ?? 0) + 1);
    if (!value || value.length < 5 || value.readUInt32BE(1) !== expected.get(topic)!.schemaId) misrouted += 1;
  });
  const problems: string[] = [];
  const details: Record<string, number | string> = {};
  for (const [topic, { count }] of expected) {
    const got = counts.get(topic) ?? 0;
    details[`out ${topic.slice(topic.lastIndexOf('.') + 1)}`] = got;
    if (got !== count) problems.push(`${topic}: ${got} committed records, expected ${count}`);
  }
  if (misrouted > 0) problems.push(`${misrouted} records on the wrong topic`);
  if (problems.length > 0) throw new Error(`output check (read_committed) failed: ${problems.join('; ')}`);
  return { ...details, verified: 'read_committed counts per type equal the input' };
}

/** Window results, key + '@' + window start → count. */
type WindowCounts = Map<string, number>;

/** The windowed phases' input, summarised: every window's count, and each key's last event time. */
interface WindowReference {
  counts: WindowCounts;
  lastEventTime: Map<string, number>;
}

const WINDOW_MS = 60_000;
const WINDOW_GRACE_MS = 10_000;

/**
 * Windowed output check against the input: every emitted window's count equals the input's, no window is emitted twice,
 * and every window that must have closed was emitted. A window must have closed when its end + grace is at or before
 * its key's last event time (stream time is per partition, and a key's partition saw at least that); later windows may
 * still be open when the input ends, depending on the other keys of the partition.
 * Against ours (the windowed phase of this run, when it ran): the same windows with the same counts.
 */
async function verifyWindows(
  ctx: Context,
  groupId: string,
  output: string,
  reference: WindowReference,
  ours: WindowCounts | undefined,
): Promise<Record<string, number | string>> {
  const peer: WindowCounts = new Map();
  let duplicates = 0;
  let malformed = 0;
  await readCommitted(ctx, groupId, [output], (_topic, key, value) => {
    try {
      const v = JSON.parse(String(value)) as { start: number; count: number };
      const id = `${String(key)}@${v.start}`;
      if (peer.has(id)) duplicates += 1;
      peer.set(id, v.count);
    } catch {
      malformed += 1;
    }
  });
  let wrong = 0;
  let unknown = 0;
  let openAtEnd = 0;
  let missing = 0;
  for (const [id, count] of peer) {
    const want = reference.counts.get(id);
    if (want === undefined) unknown += 1;
    else if (want !== count) wrong += 1;
  }
  for (const id of reference.counts.keys()) {
    if (peer.has(id)) continue;
    const k = id.slice(0, id.lastIndexOf('@'));
    const end = Number(id.slice(id.lastIndexOf('@') + 1)) + WINDOW_MS;
    if (end + WINDOW_GRACE_MS <= reference.lastEventTime.get(k)!) missing += 1;
    else openAtEnd += 1;
  }
  const details: Record<string, number | string> = { windows: peer.size, 'open at end (not emitted)': openAtEnd };
  const problems: string[] = [];
  if (duplicates > 0) problems.push(`${duplicates} windows emitted more than once`);
  if (malformed > 0) problems.push(`${malformed} output records are not JSON window results`);
  if (wrong > 0) problems.push(`${wrong} windows with a count that differs from the input's`);
  if (unknown > 0) problems.push(`${unknown} windows that the input does not have`);
  if (missing > 0) problems.push(`${missing} closed windows never emitted`);
  if (ours) {
    let onlyOurs = 0;
    let onlyPeer = 0;
    let differ = 0;
    for (const [id, count] of ours) {
      if (!peer.has(id)) onlyOurs += 1;
      else if (peer.get(id) !== count) differ += 1;
    }
    for (const id of peer.keys()) if (!ours.has(id)) onlyPeer += 1;
    details['vs ours'] =
      onlyOurs + onlyPeer + differ === 0
        ? 'equal'
        : `${onlyOurs} only ours, ${onlyPeer} only the peer's, ${differ} differ`;
    if (onlyOurs + onlyPeer + differ > 0) problems.push(`results differ from ours: ${details['vs ours']}`);
  }
  if (problems.length > 0) throw new Error(`output check (read_committed) failed: ${problems.join('; ')}`);
  return {
    ...details,
    verified: `read_committed: every closed window once, counts equal the input's${ours ? ' and ours' : ''}`,
  };
}

/** Our windowed phase's results (agentstreams.test.WindowCount, read_committed), to compare the peers with. */
/** The engine's final windows on another client against the input's counts, and against the kafkajs phase's windows. */
function verifyOurWindows(
  got: WindowCounts,
  reference: WindowReference,
  kafkajs: WindowCounts | undefined,
): Record<string, number | string> {
  const wrong = [...got].filter(([id, count]) => reference.counts.get(id) !== count).length;
  const problems: string[] = [];
  if (wrong > 0) problems.push(`${wrong} windows whose count differs from the input's`);
  if (kafkajs) {
    const differ = [...new Set([...got.keys(), ...kafkajs.keys()])].filter((id) => got.get(id) !== kafkajs.get(id));
    if (differ.length > 0)
      problems.push(`${differ.length} windows differ from the kafkajs phase's (e.g. ${differ[0]})`);
  }
  if (problems.length > 0) throw new Error(`window check (read_committed) failed: ${problems.join('; ')}`);
  return {
    windows: got.size,
    verified: `read_committed final windows equal the input's counts${kafkajs ? ' and the kafkajs phase' : ''}`,
  };
}

async function readOurWindows(ctx: Context, groupId: string, output: string): Promise<WindowCounts> {
  const ours: WindowCounts = new Map();
  await readCommitted(ctx, groupId, [output], async (_topic, _key, value) => {
    const { value: v } = await ctx.serde.decode<{ key: string; windowStart: number; count: number; final: boolean }>(
      value,
    );
    if (v.final) ours.set(`${v.key}@${Number(v.windowStart)}`, Number(v.count));
  });
  return ours;
}

// ---------------------------------------------------------------------------------------------------------------
// Latency at a steady rate

const SEQ_HEADER = 'bench.seq';
const SENT_HEADER = 'bench.sent';

/** Epoch ms with µs resolution; sender and receiver are in this process, so they read the same clock. */
const nowEpoch = (): number => performance.timeOrigin + performance.now();

function headerString(headers: IHeaders | undefined, name: string): string | undefined {
  const v = headers?.[name];
  const one = Array.isArray(v) ? v[0] : v;
  return one === undefined ? undefined : one.toString();
}

/** Nearest-rank percentiles of the values that are not NaN (NaN = not received). */
function latencyStats(values: Float64Array): LatencyStats {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort();
  const n = sorted.length;
  const at = (q: number): number =>
    n === 0 ? NaN : round(sorted[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))]!, 2);
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    count: n,
    min: n === 0 ? NaN : round(sorted[0]!, 2),
    mean: n === 0 ? NaN : round(sum / n, 2),
    p50: at(0.5),
    p90: at(0.9),
    p99: at(0.99),
    p999: at(0.999),
    max: n === 0 ? NaN : round(sorted[n - 1]!, 2),
  };
}

/** A read_committed consumer with the runtime's consumer settings (runtime/engine/runner.ts), so phases compare like with like. */
function runnerLikeConsumer(ctx: Context, groupId: string) {
  return ctx.kafka.consumer({
    groupId,
    readUncommitted: false,
    sessionTimeout: ctx.config.consumer.sessionTimeoutMs,
    heartbeatInterval: 1_000,
    rebalanceTimeout: 30_000,
    maxBytesPerPartition: ctx.config.consumer.maxBytesPerPartition,
    maxWaitTimeInMs: 100,
    retry: { retries: 10 },
  });
}

/** A read_committed consumer on the output topics: one receipt count and one latency per sequence number. */
async function startProbe(ctx: Context, groupId: string, topics: string[], total: number) {
  const latency = new Float64Array(total).fill(NaN);
  const receipts = new Uint32Array(total);
  const counts = { distinct: 0, receipts: 0, unexpected: 0 };
  const consumer = runnerLikeConsumer(ctx, groupId);
  let resolveJoined: () => void = () => {};
  const joined = new Promise<void>((r) => (resolveJoined = r));
  consumer.on(consumer.events.GROUP_JOIN, () => resolveJoined());
  await consumer.connect();
  for (const topic of topics) await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachBatch: async ({ batch }) => {
      const now = nowEpoch();
      for (const m of batch.messages) {
        const seq = Number(headerString(m.headers, SEQ_HEADER));
        const sent = Number(headerString(m.headers, SENT_HEADER));
        if (!Number.isInteger(seq) || seq < 0 || seq >= total || !Number.isFinite(sent)) {
          counts.unexpected += 1;
          continue;
        }
        counts.receipts += 1;
        const before = receipts[seq]!;
        receipts[seq] = before + 1;
        if (before === 0) {
          latency[seq] = now - sent;
          counts.distinct += 1;
        }
      }
    },
  });
  return { consumer, joined, latency, receipts, counts };
}

/**
 * Open-loop producer: every tick it sends, in one send (acks -1, idempotent), every record whose scheduled time
 * (i / rate after the start) has come, each stamped with the time of that send call. A send slower than a tick
 * does not lower the rate: the next one carries what fell due meanwhile.
 */
async function pacedSend(ctx: Context, topic: string, pool: Message[], sentAt: Float64Array) {
  const total = sentAt.length;
  const producer = ctx.kafka.producer({ allowAutoTopicCreation: false, idempotent: true, maxInFlightRequests: 1 });
  await within(15_000, 'paced producer connect', producer.connect());
  const periodMs = 1000 / LATENCY.rate;
  const stats = { sends: 0, behindSum: 0, behindMax: 0, ackSum: 0, ackMax: 0 };
  let next = 0;
  try {
    const t0 = performance.now();
    while (next < total && !ctx.stopping()) {
      const now = performance.now();
      const due = Math.min(total, Math.floor((now - t0) / periodMs) + 1);
      if (due > next) {
        const wall = performance.timeOrigin + now;
        const behind = now - (t0 + next * periodMs);
        const messages: Message[] = new Array<Message>(due - next);
        for (let i = next; i < due; i += 1) {
          const m = pool[i]!;
          sentAt[i] = wall;
          messages[i - next] = {
            key: m.key,
            value: m.value,
            timestamp: String(Math.floor(wall)),
            headers: { [SEQ_HEADER]: String(i), [SENT_HEADER]: wall.toFixed(3) },
          };
        }
        await within(30_000, 'paced send', producer.send({ topic, acks: -1, messages }));
        const ack = performance.now() - now;
        stats.sends += 1;
        stats.behindSum += behind;
        stats.behindMax = Math.max(stats.behindMax, behind);
        stats.ackSum += ack;
        stats.ackMax = Math.max(stats.ackMax, ack);
        next = due;
      }
      const nextTick = t0 + (Math.floor((performance.now() - t0) / LATENCY.tickMs) + 1) * LATENCY.tickMs;
      await sleep(Math.max(0, nextTick - performance.now()));
    }
  } finally {
    await within(30_000, 'paced producer disconnect', producer.disconnect()).catch(() => undefined);
  }
  const mean = (sum: number): number => (stats.sends > 0 ? round(sum / stats.sends, 2) : 0);
  return {
    acked: next,
    sends: stats.sends,
    behindScheduleMs: { mean: mean(stats.behindSum), max: round(stats.behindMax, 2) },
    sendAckMs: { mean: mean(stats.ackSum), max: round(stats.ackMax, 2) },
  };
}

/** Raw kafkajs consume→produce, as baseline-chunked (no transactions, acks -1, offsets auto-committed). */
async function startPassThrough(ctx: Context, groupId: string, input: string, output: string) {
  const consumer = runnerLikeConsumer(ctx, groupId);
  const producer = ctx.kafka.producer({ allowAutoTopicCreation: false });
  const stats = { batches: 0, records: 0 };
  const errors = new Map<string, number>();
  let resolveJoined: () => void = () => {};
  const joined = new Promise<void>((r) => (resolveJoined = r));
  consumer.on(consumer.events.GROUP_JOIN, () => resolveJoined());
  consumer.on(consumer.events.CRASH, ({ payload }) =>
    errors.set(payload.error.message, (errors.get(payload.error.message) ?? 0) + 1),
  );
  await producer.connect();
  await consumer.connect();
  await consumer.subscribe({ topic: input, fromBeginning: true });
  await consumer.run({
    partitionsConsumedConcurrently: ctx.concurrency,
    eachBatch: async ({ batch, heartbeat }) => {
      if (batch.messages.length === 0) return;
      try {
        const messages = batch.messages.map((m) => ({
          key: m.key,
          value: m.value,
          timestamp: m.timestamp,
          headers: m.headers,
        }));
        for (let i = 0; i < messages.length; i += CHUNK)
          await producer.send({ topic: output, acks: -1, messages: messages.slice(i, i + CHUNK) });
      } catch (error) {
        const message = `${(error as Error).name}: ${(error as Error).message}`;
        errors.set(message, (errors.get(message) ?? 0) + 1);
        throw error;
      }
      stats.batches += 1;
      stats.records += batch.messages.length;
      await heartbeat();
    },
  });
  return {
    joined,
    stats,
    errors,
    stop: async (): Promise<void> => {
      await within(30_000, 'pass-through stop', consumer.disconnect()).catch(() => undefined);
      await within(30_000, 'pass-through producer stop', producer.disconnect()).catch(() => undefined);
    },
  };
}

type LatencyPipeline =
  | {
      kind: 'router';
      topology: Topology;
      processor: string;
      input: string;
      outputs: string[];
      probeGroup: string;
      client: KafkaClientName;
    }
  | { kind: 'pass-through'; groupId: string; input: string; outputs: [string]; probeGroup: string }
  | { kind: 'peer'; start: () => PeerProcess; groupId: string; input: string; outputs: string[]; probeGroup: string };

/**
 * Paced producer → pipeline (the engine's router, or raw kafkajs) → read_committed probe, in this process.
 * Latency per record = probe's receive time − the send call's time. Fails unless every sent record arrives once.
 */
async function latencyPhase(ctx: Context, phase: PhaseName, pipeline: LatencyPipeline): Promise<PhaseResult> {
  const total = Math.round(LATENCY.rate * (LATENCY.warmupSeconds + LATENCY.seconds));
  const warmupCount = Math.round(LATENCY.rate * LATENCY.warmupSeconds);
  const result = emptyResult(phase, total);
  const pool = marketEvents(ctx.serde, total);
  const sentAt = new Float64Array(total).fill(NaN);
  const logs: Record<string, number> = {};
  const metrics = createMetrics({ processMetrics: false });
  let handle: ProcessorHandle | undefined;
  let passThrough: Awaited<ReturnType<typeof startPassThrough>> | undefined;
  let peer: PeerProcess | undefined;
  let pids = ctx.pids;
  let probe: Awaited<ReturnType<typeof startProbe>> | undefined;
  let sender: Awaited<ReturnType<typeof pacedSend>> | undefined;
  let before: CpuSnapshot | undefined;
  const t0 = performance.now();
  try {
    // 1. The pipeline and the probe, joined before the first record is sent.
    if (pipeline.kind === 'router') {
      handle = await within(
        60_000,
        `${phase} start`,
        runProcessor({
          config: withClient(ctx.config, pipeline.client),
          topology: pipeline.topology,
          processor: pipeline.processor,
          concurrency: ctx.concurrency,
          metrics,
          log: (event, fields) => {
            logs[event] = (logs[event] ?? 0) + 1;
            if (event.endsWith('.error') && typeof fields?.message === 'string') {
              const key = `error: ${event} ${String(fields.code ?? '')} ${fields.message}`.slice(0, 240);
              logs[key] = (logs[key] ?? 0) + 1;
            }
          },
        }),
      );
      await within(60_000, `${phase} join`, handle.joined);
    } else if (pipeline.kind === 'peer') {
      peer = pipeline.start();
      pids = { ...ctx.pids, peer: peer.pid };
      // Kafka Streams reaches RUNNING once its tasks are assigned (and, with no state, restored).
      await within(90_000, `${phase} start`, peer.reached('RUNNING'));
    } else {
      passThrough = await within(
        60_000,
        `${phase} start`,
        startPassThrough(ctx, pipeline.groupId, pipeline.input, pipeline.outputs[0]),
      );
      await within(60_000, `${phase} join`, passThrough.joined);
    }
    probe = await within(60_000, `${phase} probe start`, startProbe(ctx, pipeline.probeGroup, pipeline.outputs, total));
    await within(60_000, `${phase} probe join`, probe.joined);
    result.joinMs = performance.now() - t0;

    // 2. Send at the rate, then wait for every acknowledged record (and, for the router, for its last commit).
    takeTrace();
    await ctx.profiler.start();
    before = cpuSnapshot(pids);
    sender = await pacedSend(ctx, pipeline.input, pool, sentAt);
    const sentDone = performance.now();
    const drainDeadline = sentDone + LATENCY.drainMs;
    while (probe.counts.distinct < sender.acked && performance.now() < drainDeadline && !ctx.stopping())
      await sleep(20);
    result.processedMs = performance.now() - t0;
    if (pipeline.kind === 'router' || pipeline.kind === 'peer') {
      const groupId = pipeline.kind === 'router' ? pipeline.topology.groupId(pipeline.processor) : pipeline.groupId;
      while ((await lagOf(ctx.admin, groupId, pipeline.input)) > 0 && performance.now() < drainDeadline + 10_000)
        await sleep(100);
    }
    // A duplicate would come after the first receipt: give one a second to show up.
    await sleep(1_000);
    result.caughtUpMs = performance.now() - t0;
    if (sender.acked < total) throw new Error(`${phase}: stopped after sending ${sender.acked} of ${total} records`);
  } catch (error) {
    result.status = /did not finish/.test((error as Error).message) ? 'timeout' : 'error';
    result.error = (error as Error).message;
  } finally {
    if (before) result.cores = coresBetween(before, cpuSnapshot(pids));
    result.profile = await ctx.profiler.stop(phase);
    if (peer)
      await within(40_000, `${phase} stop`, peer.stop(30_000)).catch((error: Error) =>
        console.error(`  ${phase}: ${error.message}`),
      );
    if (handle)
      await within(30_000, `${phase} stop`, handle.stop()).catch((error: Error) =>
        console.error(`  ${phase}: ${error.message}`),
      );
    if (passThrough) await passThrough.stop();
    if (probe) await within(30_000, `${phase} probe stop`, probe.consumer.disconnect()).catch(() => undefined);
  }
  const trace = takeTrace();
  const batch = (await metrics.batchDuration.get()).values;
  const sum = batch.find((v) => v.metricName?.endsWith('_sum'))?.value ?? 0;
  const count = batch.find((v) => v.metricName?.endsWith('_count'))?.value ?? 0;
  if (count > 0)
    trace['whole batch (handleBatch)'] = {
      calls: count,
      totalMs: Math.round(sum * 1000),
      meanMs: Math.round((sum / count) * 100_000) / 100,
      maxMs: NaN,
    };
  if (Object.keys(trace).length > 0) result.trace = trace;

  const acked = sender?.acked ?? 0;
  if (probe && sender) {
    let missing = 0;
    let late = 0;
    for (let i = 0; i < acked; i += 1) if (probe.receipts[i] === 0) missing += 1;
    // Received but not acknowledged (a send that failed after the broker had the records): not part of the run.
    for (let i = acked; i < total; i += 1) if (probe.receipts[i]! > 0) late += 1;
    const duplicates = probe.counts.receipts - probe.counts.distinct;
    const measuredEnd = Math.max(warmupCount, acked);
    const span = acked - 1 > warmupCount ? sentAt[acked - 1]! - sentAt[warmupCount]! : 0;
    result.latency = {
      targetRate: LATENCY.rate,
      warmupSeconds: LATENCY.warmupSeconds,
      seconds: LATENCY.seconds,
      tickMs: LATENCY.tickMs,
      sent: acked,
      received: probe.counts.distinct - late,
      duplicates,
      missing,
      unexpected: probe.counts.unexpected + late,
      achievedRate: span > 0 ? Math.round(((acked - 1 - warmupCount) / span) * 1000) : 0,
      behindScheduleMs: sender.behindScheduleMs,
      sendAckMs: sender.sendAckMs,
      measured: latencyStats(probe.latency.subarray(warmupCount, measuredEnd)),
      all: latencyStats(probe.latency.subarray(0, acked)),
    };
    result.processed = probe.counts.distinct - late;
    const problems: string[] = [];
    if (missing > 0) problems.push(`${missing} of ${acked} sent records never arrived`);
    if (duplicates > 0) problems.push(`${duplicates} records arrived more than once`);
    if (probe.counts.unexpected + late > 0)
      problems.push(`${probe.counts.unexpected + late} unexpected records on the output`);
    if (problems.length > 0 && result.status === 'ok') {
      result.status = 'error';
      result.error = `exactly-once check failed: ${problems.join('; ')}`;
    }
    result.details = { sends: sender.sends };
  }
  if (handle) {
    const s = handle.stats;
    Object.assign(result.details, {
      batches: s.batches,
      meanBatch: s.batches > 0 ? Math.round(s.records / s.batches) : 0,
      deadLettered: s.deadLettered,
      ...Object.fromEntries(Object.entries(logs).map(([k, v]) => [k.startsWith('error') ? k : `log.${k}`, v])),
    });
  }
  if (passThrough) {
    const s = passThrough.stats;
    Object.assign(result.details, {
      batches: s.batches,
      meanBatch: s.batches > 0 ? Math.round(s.records / s.batches) : 0,
      ...Object.fromEntries([...passThrough.errors].map(([m, n]) => [`error: ${m}`, n])),
    });
  }
  return result;
}

// ---------------------------------------------------------------------------------------------------------------
// Report

interface Bar {
  bar: string;
  kind: 'rate' | 'ratio';
  value: number | null;
  target: string;
  met: boolean | null;
}

function bars(results: Map<PhaseName, PhaseResult>, measure: 'headline' | 'afterJoin'): Bar[] {
  const value = (p: PhaseName): number | null => {
    const r = results.get(p);
    return r && r.status === 'ok' ? r.eps[measure] : null;
  };
  const check = (v: number | null, min: number): boolean | null => (v === null ? null : v >= min);
  const out: Bar[] = [];
  const routerEps = value('router');
  const windowedEps = value('windowed');
  if (results.has('router'))
    out.push({
      bar: 'router events/s',
      kind: 'rate',
      value: routerEps,
      target: `>= ${BARS.routerEps}`,
      met: check(routerEps, BARS.routerEps),
    });
  if (results.has('windowed'))
    out.push({
      bar: 'windowed events/s',
      kind: 'rate',
      value: windowedEps,
      target: `>= ${BARS.windowedEps}`,
      met: check(windowedEps, BARS.windowedEps),
    });
  for (const p of ['router', 'windowed'] as const) {
    if (!results.has(p)) continue;
    for (const b of BASELINES) {
      if (!results.has(b)) continue;
      const base = value(b);
      const v = value(p);
      const ratio = v !== null && base !== null && base > 0 ? round(v / base, 2) : null;
      out.push({
        bar: `${p} / ${b}`,
        kind: 'ratio',
        value: ratio,
        target: `>= ${BARS.ratio}`,
        met: check(ratio, BARS.ratio),
      });
    }
  }
  return out;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '))
    .join('\n');
}

const fmt = (n: number | null | undefined, digits = 0): string =>
  n === null || n === undefined
    ? '—'
    : n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

function report(results: Map<PhaseName, PhaseResult>, profiled: boolean): string {
  const ratioOf = (r: PhaseResult, m: 'headline' | 'afterJoin', base: PhaseName): string => {
    const b = results.get(base);
    const bv = b && b.status === 'ok' ? b.eps[m] : null;
    const v = r.status === 'ok' ? r.eps[m] : null;
    return bv && v ? (v / bv).toFixed(2) : '—';
  };
  const rows: string[][] = [
    [
      'phase',
      'status',
      'events',
      'join ms',
      'done s',
      'events/s (bar)',
      '/baseline',
      '/chunked',
      'events/s (after join)',
      'node cores',
      'kafka cores',
      'redis cores',
      'other cores',
      'batches',
      'mean batch',
    ],
  ];
  const throughput = [...results.values()].filter((r) => !isLatencyPhase(r.phase));
  for (const r of throughput) {
    const end = BASELINES.includes(r.phase as (typeof BASELINES)[number]) ? r.processedMs : r.caughtUpMs;
    rows.push([
      r.phase,
      r.status,
      fmt(r.processed),
      fmt(r.joinMs),
      fmt(end === null ? null : end / 1000, 2),
      fmt(r.status === 'ok' ? r.eps.headline : null),
      ratioOf(r, 'headline', 'baseline'),
      ratioOf(r, 'headline', 'baseline-chunked'),
      fmt(r.status === 'ok' ? r.eps.afterJoin : null),
      fmt(r.cores.bench, 2),
      fmt(r.cores.kafka, 2),
      fmt(r.cores.redis, 2),
      fmt(r.cores.others, 2),
      fmt(Number(r.details.batches ?? 0)),
      fmt(Number(r.details.meanBatch ?? 0)),
    ]);
  }
  const barRows: string[][] = [['bar (on events/s (bar))', 'value', 'target', 'result']];
  for (const b of bars(results, 'headline'))
    barRows.push([
      b.bar,
      b.value === null ? '—' : b.kind === 'ratio' ? b.value.toFixed(2) : fmt(b.value),
      b.target,
      b.met === null ? 'n/a' : b.met ? 'met' : 'NOT met',
    ]);
  const lines = throughput.length > 0 ? [table(rows), '', table(barRows), ''] : [];
  if (throughput.length > 0)
    lines.push(
      'events/s (bar): baselines = first fetch → last send acknowledged; router/windowed = start → group lag 0 (join included).',
      'events/s (after join): every phase from its group join to done. Cores: CPU time / wall time of the phase (2 cores in all;',
      '"other" = machine busy time not used by this process or the stack: other work disturbing the run).',
      `baseline = one send per fetched batch (as specified); baseline-chunked = sequential sends of <= ${CHUNK} messages.`,
    );
  const latencies = [...results.values()].filter((r) => isLatencyPhase(r.phase));
  if (latencies.length > 0) {
    const ms = (n: number | undefined): string => fmt(n === undefined || Number.isNaN(n) ? null : n, 1);
    const latencyRows: string[][] = [
      [
        'phase',
        'status',
        'sent',
        'received',
        'dup',
        'missing',
        'rate/s',
        'p50 ms',
        'p90 ms',
        'p99 ms',
        'p99.9 ms',
        'max ms',
        'mean ms',
        'batches',
        'mean batch',
        'node cores',
        'kafka cores',
        'other cores',
      ],
    ];
    for (const r of latencies) {
      const l = r.latency;
      latencyRows.push([
        r.phase,
        r.status,
        fmt(l?.sent),
        fmt(l?.received),
        fmt(l?.duplicates),
        fmt(l?.missing),
        fmt(l?.achievedRate),
        ms(l?.measured.p50),
        ms(l?.measured.p90),
        ms(l?.measured.p99),
        ms(l?.measured.p999),
        ms(l?.measured.max),
        ms(l?.measured.mean),
        fmt(Number(r.details.batches ?? 0)),
        fmt(Number(r.details.meanBatch ?? 0)),
        fmt(r.cores.bench, 2),
        fmt(r.cores.kafka, 2),
        fmt(r.cores.others, 2),
      ]);
    }
    lines.push(table(latencyRows));
    const router = results.get('latency')?.latency;
    const base = results.get('latency-baseline')?.latency;
    if (router && base) {
      const cmp = (k: 'p50' | 'p90' | 'p99' | 'max'): string =>
        `${k} ${router.measured[k] - base.measured[k] >= 0 ? '+' : ''}${(router.measured[k] - base.measured[k]).toFixed(1)} ms (×${(router.measured[k] / base.measured[k]).toFixed(2)})`;
      lines.push(`latency − latency-baseline: ${(['p50', 'p90', 'p99', 'max'] as const).map(cmp).join('; ')}`);
    }
    const kstreams = results.get('kstreams-latency')?.latency;
    if (router && kstreams) {
      const cmp = (k: 'p50' | 'p90' | 'p99' | 'max'): string =>
        `${k} ${router.measured[k] - kstreams.measured[k] >= 0 ? '+' : ''}${(router.measured[k] - kstreams.measured[k]).toFixed(1)} ms (×${(router.measured[k] / kstreams.measured[k]).toFixed(2)})`;
      lines.push(`latency − kstreams-latency: ${(['p50', 'p90', 'p99', 'max'] as const).map(cmp).join('; ')}`);
    }
    lines.push(
      `Latency = read_committed probe's receive time − the producer's send call, per record, after ${LATENCY.warmupSeconds} s of warm-up (every record is`,
      `checked exactly once, warm-up included). Target ${fmt(LATENCY.rate)}/s for ${LATENCY.seconds} s, sends every ${LATENCY.tickMs} ms. latency = the engine's`,
      'router, exactly-once (a transaction commit per fetched batch, before the probe can read it); latency-baseline = raw kafkajs, no transactions.',
      `kstreams-latency = Kafka Streams ${KSTREAMS_VERSION}'s router (bench/peers/kstreams), exactly_once_v2, commit.interval.ms ${KSTREAMS_COMMIT_INTERVAL_MS ?? '100 (default)'}.`,
    );
    for (const r of latencies) {
      const l = r.latency;
      if (!l) continue;
      lines.push(
        `${r.phase}: warm-up included p50 ${ms(l.all.p50)} / p99 ${ms(l.all.p99)} / max ${ms(l.all.max)} ms; producer send→ack mean ${ms(l.sendAckMs.mean)} max ${ms(l.sendAckMs.max)} ms, ` +
          `oldest record waited at send mean ${ms(l.behindScheduleMs.mean)} max ${ms(l.behindScheduleMs.max)} ms`,
      );
    }
  }
  const peerRows = PEER_PHASES.map((p) => results.get(p)).filter((r): r is PhaseResult => r !== undefined);
  if (peerRows.length > 0) {
    lines.push(
      '',
      `Peers (bench/peers/): Kafka Streams ${KSTREAMS_VERSION} (exactly_once_v2, commit.interval.ms ${KSTREAMS_COMMIT_INTERVAL_MS ?? '100 (default)'}), ` +
        `Quix Streams ${quixVersion()} (exactly-once, commit_interval ${QUIX_COMMIT_INTERVAL_S} s). A peer's events/s (bar) runs from its first`,
      'processed record (it prints the time) to its group lag 0; ours below use events/s (after join): join → lag 0.',
    );
    for (const r of peerRows)
      lines.push(
        `${r.phase}: peer process ${fmt(r.cores.peer, 2)} cores, kafka ${fmt(r.cores.kafka, 2)}; ${Object.entries(
          r.details,
        )
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')}`,
      );
    const ours: Record<string, PhaseName> = {
      'kstreams-router': 'router',
      'quix-router': 'router',
      'kstreams-windowed': 'windowed',
      'quix-windowed': 'windowed',
    };
    for (const r of peerRows) {
      const mine = ours[r.phase] === undefined ? undefined : results.get(ours[r.phase]!);
      if (!mine || mine.status !== 'ok' || r.status !== 'ok' || !mine.eps.afterJoin || !r.eps.headline) continue;
      lines.push(
        `${mine.phase} / ${r.phase}: ${(mine.eps.afterJoin / r.eps.headline).toFixed(2)} (${fmt(mine.eps.afterJoin)}/s against ${fmt(r.eps.headline)}/s)`,
      );
    }
  }
  for (const r of results.values()) {
    if (!r.trace) continue;
    const parts = Object.entries(r.trace).map(([name, t]) => `${name} ${t.meanMs.toFixed(1)} ms ×${t.calls}`);
    lines.push(`${r.phase} per-call latency (mean): ${parts.join('; ')}`);
  }
  if (profiled)
    lines.push(
      'NOTE: profiled run (V8 sampling profiler on): figures include profiler overhead; do not judge the bars on them.',
    );
  if (linearGrouping())
    lines.push(
      'NOTE: kafkajs groupMessagesPerPartition replaced by a linear version in this process (bench/kafkajs-linear-grouping.ts).',
    );
  const disturbed = [...results.values()]
    .filter((r) => (r.cores.others ?? 0) > 0.2)
    .map((r) => `${r.phase} (${r.cores.others})`);
  if (disturbed.length > 0)
    lines.push(
      `WARNING: other work used > 0.2 cores during ${disturbed.join(', ')}: those figures are disturbed; run again.`,
    );
  for (const r of results.values()) {
    if (r.error) lines.push(`${r.phase}: ${r.error}`);
    for (const [k, v] of Object.entries(r.details))
      if (k.startsWith('error') || k === 'log.batch.error') lines.push(`${r.phase}: ${k} ×${v}`);
  }
  return lines.join('\n');
}

/** Set by bench/kafkajs-linear-grouping.ts when preloaded. */
function linearGrouping(): boolean {
  return (globalThis as { agentStreamsBenchLinearGrouping?: boolean }).agentStreamsBenchLinearGrouping === true;
}

// ---------------------------------------------------------------------------------------------------------------
// Main

async function cleanup(kafka: KafkaPort, config: Config, runId: string, groups: string[]): Promise<void> {
  const admin = kafka.admin();
  try {
    await within(15_000, 'admin connect', admin.connect());
    await within(30_000, 'delete groups', admin.deleteGroups(groups)).catch(() => undefined);
    // includes, not startsWith: Quix Streams names its changelogs changelog__<group>--<topic>--<store>.
    const topics = (await admin.listTopics()).filter((t) => t.includes(runId));
    if (topics.length > 0)
      await within(60_000, 'delete topics', admin.deleteTopics({ topics, timeout: 30_000 })).catch((e: Error) =>
        console.error(`  cleanup: ${e.message}`),
      );
  } catch (error) {
    console.error(`  cleanup: ${(error as Error).message}`);
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
  const redis = new Redis(config.redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `as:{${runId}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== '0');
  } catch (error) {
    console.error(`  cleanup (redis): ${(error as Error).message}`);
  } finally {
    redis.disconnect();
  }
}

function gitRevision(): string {
  try {
    const rev = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
    const dirty =
      execFileSync('git', ['status', '--porcelain', '--', 'runtime'], { cwd: root, encoding: 'utf8' }).trim() !== '';
    return dirty ? `${rev}+runtime-changes` : rev;
  } catch {
    return 'unknown';
  }
}

async function main(): Promise<number> {
  const config = loadConfig();
  // The baselines, producers, probes and checks are raw kafkajs whatever AS_KAFKA_CLIENT says; engine phases name their client.
  const kafka = kafkaClient(withClient(config, 'kafkajs'), 'bench', { logLevel: logLevel.NOTHING });
  const runId = `bench-${Date.now().toString(36)}-${randomBytes(2).toString('hex')}`;
  const marketInput = `${runId}.market-events`;
  const eventsInput = `${runId}.test-events`;
  const passThrough = `${runId}.pass-through`;
  const passThroughChunked = `${runId}.pass-through-chunked`;
  /** A router of PriceTick and Trade from `input` to two output topics, named after `application`. */
  const routerOf = (application: string, input: string, outputs: [string, string]): Topology =>
    defineTopology({
      application,
      topics: {
        [input]: { partitions: PARTITIONS },
        [outputs[0]]: { partitions: PARTITIONS },
        [outputs[1]]: { partitions: PARTITIONS },
      },
      processors: {
        router: router({
          inputs: [input],
          routes: { 'agentstreams.market.PriceTick': outputs[0], 'agentstreams.market.Trade': outputs[1] },
          outputs: { [outputs[0]]: ['agentstreams.market.PriceTick'], [outputs[1]]: ['agentstreams.market.Trade'] },
        }),
      },
    });
  const latencyInput = `${runId}.latency.market-events`;
  const latencyOutputs: [string, string] = [`${runId}.latency.signals.price`, `${runId}.latency.signals.trade`];
  const latencyBaselineInput = `${runId}.latency-baseline.market-events`;
  const latencyBaselineOutput = `${runId}.latency-baseline.pass-through`;
  const latencyTopology = routerOf(`${runId}-latency`, latencyInput, latencyOutputs);
  const latencyGroups = {
    baseline: `${runId}-latency-baseline`,
    baselineProbe: `${runId}-latency-baseline-probe`,
    routerProbe: `${runId}-latency-probe`,
  };
  const routerOutputs: [string, string] = [`${runId}.signals.price`, `${runId}.signals.trade`];
  const routerTopology = routerOf(`${runId}-router`, marketInput, routerOutputs);
  /** The engine on another client: its own output topics and groups, the same inputs as router / windowed. */
  const otherClients = (['platformatic', 'confluent'] as const).map((client) => {
    const latencyInput = `${runId}.latency-${client}.market-events`;
    const latencyOutputs: [string, string] = [
      `${runId}.latency-${client}.signals.price`,
      `${runId}.latency-${client}.signals.trade`,
    ];
    const routerOutputs: [string, string] = [`${runId}.${client}.signals.price`, `${runId}.${client}.signals.trade`];
    return {
      client,
      name: client === 'platformatic' ? '@platformatic/kafka' : '@confluentinc/kafka-javascript',
      phases: {
        router: `router-${client}` as PhaseName,
        windowed: `windowed-${client}` as PhaseName,
        latency: `latency-${client}` as PhaseName,
      },
      routerOutputs,
      routerTopology: routerOf(`${runId}-router-${client}`, marketInput, routerOutputs),
      windowTopology: windowCountTopology(`${runId}-window-${client}`, eventsInput),
      windowOutput: `${runId}-window-${client}.counts`,
      latencyInput,
      latencyOutputs,
      latencyTopology: routerOf(`${runId}-latency-${client}`, latencyInput, latencyOutputs),
      latencyProbe: `${runId}-latency-${client}-probe`,
    };
  });
  const windowTopology = windowCountTopology(`${runId}-window`, eventsInput);
  // Peers: fresh output topics and groups each; the same input topics as router / windowed.
  const peerTopics = {
    kstreamsRouter: [`${runId}.kstreams.signals.price`, `${runId}.kstreams.signals.trade`],
    quixRouter: [`${runId}.quix.signals.price`, `${runId}.quix.signals.trade`],
    kstreamsWindowed: `${runId}.kstreams.window-counts`,
    quixWindowed: `${runId}.quix.window-counts`,
    kstreamsLatencyInput: `${runId}.kstreams-latency.market-events`,
    kstreamsLatency: [`${runId}.kstreams-latency.signals.price`, `${runId}.kstreams-latency.signals.trade`],
  };
  const peerGroups = {
    kstreamsRouter: `${runId}-kstreams-router`,
    kstreamsWindowed: `${runId}-kstreams-windowed`,
    kstreamsLatency: `${runId}-kstreams-latency`,
    kstreamsLatencyProbe: `${runId}-kstreams-latency-probe`,
    quixRouter: `${runId}-quix-router`,
    quixWindowed: `${runId}-quix-windowed`,
    verify: (phase: string): string => `${runId}-${phase}-verify`,
  };
  const wantedPeers = PEER_PHASES.filter((p) => wanted.has(p));
  const baselineGroups: Record<(typeof BASELINES)[number], string> = {
    baseline: `${runId}-baseline`,
    'baseline-chunked': `${runId}-baseline-chunked`,
  };
  const groups = [
    ...Object.values(baselineGroups),
    routerTopology.groupId('router'),
    windowTopology.groupId('counter'),
    latencyTopology.groupId('router'),
    peerGroups.verify('router'),
    ...otherClients.flatMap((o) => [
      o.routerTopology.groupId('router'),
      o.windowTopology.groupId('counter'),
      o.latencyTopology.groupId('router'),
      o.latencyProbe,
      peerGroups.verify(o.phases.router),
      peerGroups.verify(o.phases.windowed),
    ]),
    ...Object.values(latencyGroups),
    ...Object.values(peerGroups).filter((g): g is string => typeof g === 'string'),
    ...wantedPeers.map((p) => peerGroups.verify(p)),
    peerGroups.verify('windowed'),
  ];
  const peerStateDir = wantedPeers.length > 0 ? mkdtempSync(join(tmpdir(), `${runId}-peers-`)) : undefined;
  const profiler = new PhaseProfiler(args.profile === undefined ? undefined : resolve(args.profile));
  const concurrency = CONCURRENCY ?? Math.min(PARTITIONS, 6);
  const results = new Map<PhaseName, PhaseResult>();
  const admin = kafka.admin();
  let stopping = false;

  // Whatever happens below, the process ends: a watchdog past every phase's deadline, and signals clean up first.
  const watchdog = setTimeout(
    () => {
      console.error('bench: overall deadline passed; exiting');
      process.exit(3);
    },
    (Math.max(PHASE_TIMEOUT_MS, LATENCY_PHASE_MS) + QUIET_WAIT_MS) * (wanted.size + 2) + 180_000,
  );
  watchdog.unref();
  let signalledAt = 0;
  const onSignal = (signal: string): void => {
    // Ctrl-C reaches this process twice (directly and relayed by tsx's wrapper): only a signal sent a while after
    // the first one skips the clean-up.
    if (stopping) {
      if (Date.now() - signalledAt > 3_000) process.exit(130);
      return;
    }
    stopping = true;
    signalledAt = Date.now();
    console.error(`bench: ${signal}: cleaning up`);
    void cleanup(kafka, config, runId, groups).finally(() => process.exit(130));
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));

  console.log(
    `bench ${runId}: ${[...wanted].every(isLatencyPhase) ? `paced ${LATENCY.rate}/s for ${LATENCY.warmupSeconds} + ${LATENCY.seconds} s per phase` : `${EVENTS} events per topic`}, ${PARTITIONS} partitions, phases ${[...wanted].join(',')}, concurrency ${concurrency}, ` +
      `maxBytesPerPartition ${config.consumer.maxBytesPerPartition}, commit interval ${config.commit.intervalMs} ms, trade share ${TRADE_SHARE.toFixed(2)}${linearGrouping() ? ', kafkajs linear grouping' : ''}`,
  );
  const meta = {
    runId,
    date: new Date().toISOString(),
    label: args.label,
    revision: gitRevision(),
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGb: round(totalmem() / 2 ** 30, 1),
    loadavgAtStart: loadavg().map((l) => round(l, 2)),
    events: EVENTS,
    partitions: PARTITIONS,
    symbols: SYMBOLS,
    concurrency,
    maxBytesPerPartition: config.consumer.maxBytesPerPartition,
    commitIntervalMs: config.commit.intervalMs,
    commitMaxRecords: config.commit.maxRecords,
    tradeShare: TRADE_SHARE,
    padBytes: PAD_BYTES,
    chunk: CHUNK,
    kafkajsLinearGrouping: linearGrouping(),
    profiled: profiler.enabled,
    traced: !args['no-trace'],
    ...([...wanted].some(isLatencyPhase)
      ? {
          latencyRate: LATENCY.rate,
          latencySeconds: LATENCY.seconds,
          latencyWarmupSeconds: LATENCY.warmupSeconds,
          latencyTickMs: LATENCY.tickMs,
        }
      : {}),
  };
  let produce: Record<string, number> = {};
  try {
    await within(15_000, 'connecting to Kafka', admin.connect());

    // 1. Schemas and input, before anything is measured.
    const registry = registryClient(config);
    for (const dir of ['schemas', 'test/fixtures/schemas']) {
      await registerSchemas(config, registry, loadSchemas(join(root, dir))).catch((error: Error) =>
        console.error(
          `  schemas in ${dir}: ${error.message.split('\n')[0]} (continuing if the subjects the bench needs exist)`,
        ),
      );
    }
    const serde = new AvroSerde(registry);
    for (const subject of ['agentstreams.market.PriceTick', 'agentstreams.market.Trade', 'agentstreams.test.Event'])
      await serde.writerFor(subject);
    await admin.createTopics({
      waitForLeaders: true,
      topics: [
        ...[marketInput, eventsInput].map((topic) => ({ topic, numPartitions: PARTITIONS })),
        ...(wanted.has('latency') ? [latencyInput, ...latencyOutputs] : []).map((topic) => ({
          topic,
          numPartitions: PARTITIONS,
        })),
        ...otherClients
          .flatMap((o) => (wanted.has(o.phases.latency) ? [o.latencyInput, ...o.latencyOutputs] : []))
          .map((topic) => ({ topic, numPartitions: PARTITIONS })),
        ...(wanted.has('latency-baseline') ? [latencyBaselineInput, latencyBaselineOutput] : []).map((topic) => ({
          topic,
          numPartitions: PARTITIONS,
        })),
        ...[
          ...(wanted.has('kstreams-router') ? peerTopics.kstreamsRouter : []),
          ...(wanted.has('quix-router') ? peerTopics.quixRouter : []),
          ...(wanted.has('kstreams-latency') ? [peerTopics.kstreamsLatencyInput, ...peerTopics.kstreamsLatency] : []),
        ].map((topic) => ({ topic, numPartitions: PARTITIONS })),
        // The peers stamp window results with their event time (January 2026): without this the broker's time-based
        // retention can delete them before they are verified.
        ...[
          ...(wanted.has('kstreams-windowed') ? [peerTopics.kstreamsWindowed] : []),
          ...(wanted.has('quix-windowed') ? [peerTopics.quixWindowed] : []),
        ].map((topic) => ({
          topic,
          numPartitions: PARTITIONS,
          configEntries: [{ name: 'retention.ms', value: '-1' }],
        })),
        // One send per fetched batch can exceed the broker's 1 MiB default message.max.bytes: let the baseline's
        // output take it, so that the baseline measures kafkajs rather than failing (the engine's topics keep the default).
        ...[passThrough, passThroughChunked].map((topic) => ({
          topic,
          numPartitions: PARTITIONS,
          configEntries: [{ name: 'max.message.bytes', value: String(64 * 2 ** 20) }],
        })),
      ],
    });
    // The latency phases produce their own input, paced, while they measure.
    const market = [
      'baseline',
      'baseline-chunked',
      'router',
      'router-platformatic',
      'router-confluent',
      'kstreams-router',
      'quix-router',
    ].some((p) => wanted.has(p as PhaseName))
      ? marketEvents(serde, EVENTS)
      : [];
    // The peers route by schema id: the ids of this registry, and how many records of each the input has.
    const schemaIdOf = (subject: string, value: unknown): number => serde.encode(subject, value).readUInt32BE(1);
    const priceId = schemaIdOf('agentstreams.market.PriceTick', {
      symbol: 'X',
      eventTime: 0,
      price: 1,
      bid: 1,
      ask: 1,
      currency: 'USD',
      venue: 'X',
    });
    const tradeId = schemaIdOf('agentstreams.market.Trade', {
      symbol: 'X',
      eventTime: 0,
      price: 1,
      quantity: 1,
      side: 'BUY',
      tradeId: 't',
    });
    const perSchema = new Map<number, number>([
      [priceId, 0],
      [tradeId, 0],
    ]);
    for (const m of market) {
      const id = (m.value as Buffer).readUInt32BE(1);
      perSchema.set(id, (perSchema.get(id) ?? 0) + 1);
    }
    const marketProduced = market.length > 0 ? await produceAll(kafka, marketInput, market) : { ms: 0, bytes: 0 };
    market.length = 0;
    const events = [
      'windowed',
      'windowed-platformatic',
      'windowed-confluent',
      'kstreams-windowed',
      'quix-windowed',
    ].some((p) => wanted.has(p as PhaseName))
      ? testEvents(serde, EVENTS)
      : [];
    // The windowed phases' expected results, from the input itself (testEvents: event time START + 10 ms × i).
    const windowReference: WindowReference = { counts: new Map(), lastEventTime: new Map() };
    events.forEach((m, i) => {
      const key = String(m.key);
      const time = START + i * 10;
      const id = `${key}@${Math.floor(time / WINDOW_MS) * WINDOW_MS}`;
      windowReference.counts.set(id, (windowReference.counts.get(id) ?? 0) + 1);
      windowReference.lastEventTime.set(key, time);
    });
    const eventsProduced = events.length > 0 ? await produceAll(kafka, eventsInput, events) : { ms: 0, bytes: 0 };
    events.length = 0;
    produce = {
      marketEps: eps(EVENTS, marketProduced.ms) ?? 0,
      marketBytes: marketProduced.bytes,
      testEventsEps: eps(EVENTS, eventsProduced.ms) ?? 0,
      testEventsBytes: eventsProduced.bytes,
    };
    if (marketProduced.ms > 0 || eventsProduced.ms > 0) {
      console.log(
        `  produced ${EVENTS} market events (${(marketProduced.bytes / 2 ** 20).toFixed(1)} MiB) at ${fmt(produce.marketEps)}/s` +
          (eventsProduced.ms > 0 ? `, ${EVENTS} test events at ${fmt(produce.testEventsEps)}/s` : ''),
      );
    }
    const pids = stackPids(config);
    if (!args['no-trace']) installTracing();
    const ctx: Context = { config, kafka, admin, pids, profiler, concurrency, serde, stopping: () => stopping };
    // Peers are built (Maven) or installed (PyPI) before anything is measured; both are cached in .cache/.
    const kstreamsClasspath = wantedPeers.some((p) => p.startsWith('kstreams'))
      ? ensureKStreamsPeer((line) => console.log(`  ${line}`))
      : '';
    const quixPython = wantedPeers.some((p) => p.startsWith('quix'))
      ? ensureQuixPeer((line) => console.log(`  ${line}`))
      : '';
    const bootstrap = config.kafka.brokers.join(',');
    const routesTo = (topics: string[]): Map<number, string> =>
      new Map([
        [priceId, topics[0]!],
        [tradeId, topics[1]!],
      ]);
    const expectedRoutes = (topics: string[]) =>
      new Map([
        [topics[0]!, { schemaId: priceId, count: perSchema.get(priceId)! }],
        [topics[1]!, { schemaId: tradeId, count: perSchema.get(tradeId)! }],
      ]);
    if (perSchema.size > 2)
      throw new Error(
        `the market input has schema ids ${[...perSchema.keys()].join(', ')}; expected only ${priceId} and ${tradeId}`,
      );
    global.gc?.();
    await sleep(1_000);

    // 2–4. The phases, one after the other, each against its own fresh group.
    const measured = async (phase: PhaseName, what: string, run: () => Promise<PhaseResult>): Promise<void> => {
      if (!wanted.has(phase) || stopping) return;
      const quiet = QUIET_WAIT_MS > 0 ? await waitQuiet(pids) : undefined;
      console.log(
        `  ${phase}: ${what}${quiet && quiet.waitedMs > 2_500 ? ` (waited ${Math.round(quiet.waitedMs / 1000)} s for a quiet machine)` : ''} …`,
      );
      const result = await run();
      if (quiet) result.quiet = quiet;
      results.set(phase, result);
    };
    for (const b of BASELINES) {
      await measured(
        b,
        `kafkajs pass-through${b === 'baseline' ? ', one send per batch' : `, sends of <= ${CHUNK}`}`,
        () =>
          baselinePhase(
            ctx,
            b,
            marketInput,
            b === 'baseline' ? passThrough : passThroughChunked,
            baselineGroups[b],
            b === 'baseline' ? 0 : CHUNK,
          ),
      );
    }
    await measured('router', 'engine on kafkajs, one instance', () =>
      enginePhase(ctx, 'router', routerTopology, 'router', marketInput, 'kafkajs', () =>
        verifyRouted(ctx, peerGroups.verify('router'), expectedRoutes(routerOutputs)),
      ),
    );
    await measured('windowed', 'engine on kafkajs, tumbling 1m count by symbol', () =>
      enginePhase(ctx, 'windowed', windowTopology, 'counter', eventsInput, 'kafkajs'),
    );
    let ourWindows: WindowCounts | undefined;
    const oursOnce = async (): Promise<WindowCounts | undefined> => {
      if (results.get('windowed')?.status !== 'ok') return undefined;
      ourWindows ??= await readOurWindows(ctx, peerGroups.verify('windowed'), `${runId}-window.counts`);
      return ourWindows;
    };
    for (const o of otherClients) {
      await measured(o.phases.router, `engine on ${o.name}, one instance`, () =>
        enginePhase(ctx, o.phases.router, o.routerTopology, 'router', marketInput, o.client, () =>
          verifyRouted(ctx, peerGroups.verify(o.phases.router), expectedRoutes(o.routerOutputs)),
        ),
      );
      await measured(o.phases.windowed, `engine on ${o.name}, tumbling 1m count by symbol`, () =>
        enginePhase(ctx, o.phases.windowed, o.windowTopology, 'counter', eventsInput, o.client, async () =>
          verifyOurWindows(
            await readOurWindows(ctx, peerGroups.verify(o.phases.windowed), o.windowOutput),
            windowReference,
            await oursOnce(),
          ),
        ),
      );
    }
    await measured('kstreams-router', `Kafka Streams ${KSTREAMS_VERSION} router, exactly_once_v2`, () =>
      peerPhase(ctx, 'kstreams-router', {
        start: () =>
          startKStreamsPeer(kstreamsClasspath, {
            mode: 'router',
            bootstrap,
            application: peerGroups.kstreamsRouter,
            input: marketInput,
            stateDir: join(peerStateDir!, 'kstreams-router'),
            routes: routesTo(peerTopics.kstreamsRouter),
            ...(KSTREAMS_COMMIT_INTERVAL_MS === undefined ? {} : { commitIntervalMs: KSTREAMS_COMMIT_INTERVAL_MS }),
          }),
        groupId: peerGroups.kstreamsRouter,
        input: marketInput,
        verify: () =>
          verifyRouted(ctx, peerGroups.verify('kstreams-router'), expectedRoutes(peerTopics.kstreamsRouter)),
      }),
    );
    await measured(
      'kstreams-windowed',
      `Kafka Streams ${KSTREAMS_VERSION} tumbling 1m count, emit on window close, exactly_once_v2`,
      () =>
        peerPhase(ctx, 'kstreams-windowed', {
          start: () =>
            startKStreamsPeer(kstreamsClasspath, {
              mode: 'windowed',
              bootstrap,
              application: peerGroups.kstreamsWindowed,
              input: eventsInput,
              stateDir: join(peerStateDir!, 'kstreams-windowed'),
              output: peerTopics.kstreamsWindowed,
              ...(KSTREAMS_COMMIT_INTERVAL_MS === undefined ? {} : { commitIntervalMs: KSTREAMS_COMMIT_INTERVAL_MS }),
            }),
          groupId: peerGroups.kstreamsWindowed,
          input: eventsInput,
          verify: async () =>
            verifyWindows(
              ctx,
              peerGroups.verify('kstreams-windowed'),
              peerTopics.kstreamsWindowed,
              windowReference,
              await oursOnce(),
            ),
        }),
    );
    await measured(
      'quix-router',
      `Quix Streams ${quixVersion()} router, exactly-once, commit ${QUIX_COMMIT_INTERVAL_S} s`,
      () =>
        peerPhase(ctx, 'quix-router', {
          start: () =>
            startQuixPeer(quixPython, {
              mode: 'router',
              bootstrap,
              group: peerGroups.quixRouter,
              input: marketInput,
              stateDir: join(peerStateDir!, 'quix-router'),
              routes: routesTo(peerTopics.quixRouter),
              commitIntervalS: QUIX_COMMIT_INTERVAL_S,
            }),
          groupId: peerGroups.quixRouter,
          input: marketInput,
          verify: () => verifyRouted(ctx, peerGroups.verify('quix-router'), expectedRoutes(peerTopics.quixRouter)),
        }),
    );
    await measured(
      'quix-windowed',
      `Quix Streams ${quixVersion()} tumbling 1m count, final, exactly-once, commit ${QUIX_COMMIT_INTERVAL_S} s`,
      () =>
        peerPhase(ctx, 'quix-windowed', {
          start: () =>
            startQuixPeer(quixPython, {
              mode: 'windowed',
              bootstrap,
              group: peerGroups.quixWindowed,
              input: eventsInput,
              stateDir: join(peerStateDir!, 'quix-windowed'),
              output: peerTopics.quixWindowed,
              commitIntervalS: QUIX_COMMIT_INTERVAL_S,
            }),
          groupId: peerGroups.quixWindowed,
          input: eventsInput,
          verify: async () =>
            verifyWindows(
              ctx,
              peerGroups.verify('quix-windowed'),
              peerTopics.quixWindowed,
              windowReference,
              await oursOnce(),
            ),
        }),
    );
    const paced = `${fmt(LATENCY.rate)} events/s for ${LATENCY.warmupSeconds} + ${LATENCY.seconds} s`;
    await measured('latency-baseline', `kafkajs pass-through at ${paced}`, () =>
      latencyPhase(ctx, 'latency-baseline', {
        kind: 'pass-through',
        groupId: latencyGroups.baseline,
        input: latencyBaselineInput,
        outputs: [latencyBaselineOutput],
        probeGroup: latencyGroups.baselineProbe,
      }),
    );
    await measured('latency', `engine router on kafkajs (exactly-once) at ${paced}`, () =>
      latencyPhase(ctx, 'latency', {
        kind: 'router',
        topology: latencyTopology,
        processor: 'router',
        input: latencyInput,
        outputs: latencyOutputs,
        probeGroup: latencyGroups.routerProbe,
        client: 'kafkajs',
      }),
    );
    for (const o of otherClients) {
      await measured(o.phases.latency, `engine router on ${o.name} (exactly-once) at ${paced}`, () =>
        latencyPhase(ctx, o.phases.latency, {
          kind: 'router',
          topology: o.latencyTopology,
          processor: 'router',
          input: o.latencyInput,
          outputs: o.latencyOutputs,
          probeGroup: o.latencyProbe,
          client: o.client,
        }),
      );
    }
    await measured('kstreams-latency', `Kafka Streams ${KSTREAMS_VERSION} router (exactly_once_v2) at ${paced}`, () =>
      latencyPhase(ctx, 'kstreams-latency', {
        kind: 'peer',
        start: () =>
          startKStreamsPeer(kstreamsClasspath, {
            mode: 'router',
            bootstrap,
            application: peerGroups.kstreamsLatency,
            input: peerTopics.kstreamsLatencyInput,
            stateDir: join(peerStateDir!, 'kstreams-latency'),
            routes: routesTo(peerTopics.kstreamsLatency),
            ...(KSTREAMS_COMMIT_INTERVAL_MS === undefined ? {} : { commitIntervalMs: KSTREAMS_COMMIT_INTERVAL_MS }),
          }),
        groupId: peerGroups.kstreamsLatency,
        input: peerTopics.kstreamsLatencyInput,
        outputs: peerTopics.kstreamsLatency,
        probeGroup: peerGroups.kstreamsLatencyProbe,
      }),
    );
  } catch (error) {
    console.error(`bench: ${(error as Error).message}`);
  } finally {
    await admin.disconnect().catch(() => undefined);
    if (!args.keep && !stopping) await cleanup(kafka, config, runId, groups);
    if (peerStateDir) rmSync(peerStateDir, { recursive: true, force: true });
  }

  if (results.size === 0) return 1;
  const output = {
    meta,
    produce,
    phases: Object.fromEntries(results),
    bars: { headline: bars(results, 'headline'), afterJoin: bars(results, 'afterJoin') },
  };
  console.log('');
  console.log(report(results, profiler.enabled));
  if (!args['no-write']) {
    const dir = join(root, 'bench', 'results');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `${meta.date.replaceAll(':', '-')}.json`);
    writeFileSync(file, `${JSON.stringify(output, null, 2)}\n`);
    console.log(`\nresults: ${file}`);
  }
  for (const r of results.values()) if (r.profile) console.log(`profile: ${r.profile}`);
  return [...results.values()].every((r) => r.status === 'ok') ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
