/**
 * The whole market fleet under load, the way production runs it: every processor of topologies/market-signals.ts
 * and the ClickHouse sink as its own member process (`agent-streams run … --processor NAME`, `agent-streams sink …`,
 * started through cli/fleet.ts like the demo), the alert analyst and the digest writer talking to the Anthropic
 * stand-in (test/fakes/anthropic.ts) through ANTHROPIC_BASE_URL, and the synthetic market feed
 * (connectors/synthetic-feed.ts, the demo's feed: 12 symbols, 4 news a minute, 60 filings an hour, the demo's three
 * planted scenarios in every phase) paced at fixed rates in phases:
 *
 *   npx tsx bench/load.ts [--rate 2000] [--minutes 10] [--soak-rate 2000] [--soak-minutes 30]
 *                         [--ramp 4000,8000,16000] [--ramp-minutes 2] [--sample-seconds 10] [--drain-seconds 120]
 *                         [--application load-<time>] [--keep]
 *
 * `--soak-minutes 0` skips the soak, `--ramp none` the ramp. The ramp stops at the first step where some processor's
 * lag grows without bound. Every --sample-seconds it records, per processor (consumer group `<application>.<name>`):
 * the lag (end offsets minus committed offsets over its input topics) and the records it committed; per process
 * (members, and this one, which runs the feed and the stand-in): VmRSS and CPU from /proc; the machine's load average
 * and CPU use. Everything goes to bench/results/load-<time>.json; a table per minute goes to stdout, and the summary
 * at the end: lag per phase, RSS flat or not (first 5 minutes against last 5 minutes of the steady phases, and a
 * least-squares slope in MiB/min), where the fleet saturates, and the events/day one member of each agent handles.
 *
 * Its own names: application, topics (`<application>.…`, the feed's included), consumer groups, ClickHouse database
 * and Redis keys are the run's own, and are deleted at the end unless --keep. All on 127.0.0.1 (the local stack);
 * every member is stopped by pid at the end, on an error and on SIGINT/SIGTERM.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { loadConfig, type Config } from '../runtime/config/index.ts';
import { ensureTopics } from '../runtime/engine/topics.ts';
import { kafkaClient } from '../runtime/kafka/client.ts';
import type { KafkaAdmin } from '../runtime/kafka/port.ts';
import { loadSchemas, registerSchemas } from '../runtime/serde/schemas.ts';
import { registryClient } from '../runtime/serde/avro.ts';
import { writeTable } from '../runtime/state/tables.ts';
import { migrateDatabase } from '../sinks/clickhouse/schema.ts';
import { openClickHouse } from '../sinks/clickhouse/client.ts';
import { runFeed } from '../connectors/synthetic-feed.ts';
import { openMarketProducer } from '../connectors/market-producer.ts';
import { marketSignals, marketTopics } from '../topologies/market-signals.ts';
import { demoScenarios } from '../cli/commands/demo.ts';
import { startMember, stopMembers, waitUntilStarted, type Member } from '../cli/fleet.ts';
import { projectRoot } from '../cli/paths.ts';
import { fleetResponder, startAnthropicFake } from '../test/fakes/anthropic.ts';

const { values: opts } = parseArgs({
  options: {
    rate: { type: 'string', default: '2000' },
    minutes: { type: 'string', default: '10' },
    'soak-rate': { type: 'string', default: '2000' },
    'soak-minutes': { type: 'string', default: '30' },
    ramp: { type: 'string', default: '4000,8000,16000' },
    'ramp-minutes': { type: 'string', default: '2' },
    'sample-seconds': { type: 'string', default: '10' },
    'drain-seconds': { type: 'string', default: '120' },
    application: { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
});

function num(flag: string, raw: string, min: number, max: number): number {
  const value = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(value) || value < min || value > max)
    throw new Error(`--${flag} takes a number from ${min} to ${max}, got "${raw}"`);
  return value;
}
const RATE = num('rate', opts.rate, 10, 100_000);
const MINUTES = num('minutes', opts.minutes, 0.5, 120);
const SOAK_RATE = num('soak-rate', opts['soak-rate'], 10, 100_000);
const SOAK_MINUTES = num('soak-minutes', opts['soak-minutes'], 0, 240);
const RAMP =
  opts.ramp === 'none' || opts.ramp === '' ? [] : opts.ramp.split(',').map((r) => num('ramp', r, 10, 200_000));
const RAMP_MINUTES = num('ramp-minutes', opts['ramp-minutes'], 0.5, 60);
const SAMPLE_S = num('sample-seconds', opts['sample-seconds'], 1, 300);
const DRAIN_S = num('drain-seconds', opts['drain-seconds'], 0, 3600);
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
const APPLICATION = opts.application ?? `load-${stamp.slice(0, 19).toLowerCase()}`;
if (!/^[a-z][a-z0-9-]{0,60}$/.test(APPLICATION))
  throw new Error(`--application takes lowercase letters, digits and dashes, got "${APPLICATION}"`);
const DATABASE = `bench_${APPLICATION.replaceAll('-', '_')}`;
const EVENTS_TOPIC = `${APPLICATION}.market.events`;
const TOPOLOGY_FILE = join(projectRoot, 'topologies/market-signals.ts');
const SINK = 'clickhouse-sink';
const CLK_TCK = 100; // /proc/<pid>/stat counts CPU in USER_HZ ticks, 100 on Linux

type PhaseKind = 'load' | 'soak' | 'ramp';
interface Phase {
  name: string;
  kind: PhaseKind;
  rate: number;
  seconds: number;
}

interface ProcessSample {
  pid: number;
  rssMiB: number;
  /** Share of one core over the interval since the previous sample, in %. */
  cpuPct: number | null;
  alive: boolean;
}

interface GroupSample {
  lag: number;
  /** Sum of the committed offsets over its input partitions (records processed, plus transaction markers). */
  committed: number;
  /** Records committed per second since the previous sample. */
  rate: number | null;
}

interface Sample {
  t: number; // seconds since the fleet started
  at: string;
  phase: string;
  /** Events the feed produced since the start. */
  produced: number;
  feedRate: number | null;
  load: [number, number, number];
  /** The machine's CPU use over the interval, % of all cores. */
  machineCpuPct: number | null;
  llmCalls: number;
  groups: Record<string, GroupSample>;
  processes: Record<string, ProcessSample>;
}

const config = loadConfig();
const log = (line: string): void => console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}`);

// ---------------------------------------------------------------------------------------------------------------
// /proc readings

function procStat(pid: number): { ticks: number } | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // After the command: state is field 3, utime field 14, stime field 15 (1-based over the whole line).
    return { ticks: Number(fields[11]) + Number(fields[12]) };
  } catch {
    return null;
  }
}

function rssMiB(pid: number): number | null {
  try {
    const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) / 1024 : null;
  } catch {
    return null;
  }
}

function machineTicks(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  const total = v.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

// ---------------------------------------------------------------------------------------------------------------
// Lag

async function groupOffsets(
  admin: KafkaAdmin,
  groupId: string,
  inputs: readonly string[],
  ends: Map<string, Map<number, { high: number; low: number }>>,
): Promise<{ lag: number; committed: number }> {
  const committed = await admin.fetchOffsets({ groupId, topics: [...inputs] });
  let lag = 0;
  let sum = 0;
  for (const topic of inputs) {
    const partitions = ends.get(topic) ?? new Map();
    const offsets = committed.find((c) => c.topic === topic)?.partitions ?? [];
    for (const [partition, { high, low }] of partitions) {
      const at = Number(offsets.find((o) => o.partition === partition)?.offset ?? -1);
      const from = at >= 0 ? at : low;
      lag += Math.max(0, high - from);
      sum += from;
    }
  }
  return { lag, committed: sum };
}

// ---------------------------------------------------------------------------------------------------------------
// Statistics

const mean = (xs: number[]): number => (xs.length === 0 ? NaN : xs.reduce((a, b) => a + b, 0) / xs.length);
/** Least-squares slope of y over x. */
function slope(points: Array<[number, number]>): number {
  if (points.length < 2) return NaN;
  const mx = mean(points.map((p) => p[0]));
  const my = mean(points.map((p) => p[1]));
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? NaN : num / den;
}
const round = (x: number, digits = 1): number => (Number.isFinite(x) ? Math.round(x * 10 ** digits) / 10 ** digits : x);

// ---------------------------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const phases: Phase[] = [
    { name: `load ${RATE}/s`, kind: 'load', rate: RATE, seconds: Math.round(MINUTES * 60) },
    ...(SOAK_MINUTES > 0
      ? [
          {
            name: `soak ${SOAK_RATE}/s`,
            kind: 'soak' as const,
            rate: SOAK_RATE,
            seconds: Math.round(SOAK_MINUTES * 60),
          },
        ]
      : []),
    ...RAMP.map((rate) => ({
      name: `ramp ${rate}/s`,
      kind: 'ramp' as const,
      rate,
      seconds: Math.round(RAMP_MINUTES * 60),
    })),
  ];
  const command = `npx tsx bench/load.ts ${process.argv.slice(2).join(' ')}`.trim();
  log(`application ${APPLICATION}, events topic ${EVENTS_TOPIC}, ClickHouse database ${DATABASE}`);
  log(`phases: ${phases.map((p) => `${p.name} × ${p.seconds} s`).join(', ')}; a sample every ${SAMPLE_S} s`);

  // The run's own stack objects: database, schemas, portfolios, topics.
  const runConfig: Config = { ...config, clickhouse: { ...config.clickhouse, database: DATABASE } };
  const topology = marketSignals({ application: APPLICATION, eventsTopic: EVENTS_TOPIC });
  const t = marketTopics({ application: APPLICATION, eventsTopic: EVENTS_TOPIC });
  const processors = Object.keys(topology.processors);
  const inputsOf: Record<string, readonly string[]> = Object.fromEntries(
    processors.map((name) => [name, topology.processors[name]!.inputs]),
  );
  inputsOf[SINK] = [t.findings.name, t.portfolioFindings.name, t.alerts.name, t.digests.name];
  const groups = [...processors, SINK];
  const allTopics = [
    ...new Set(
      Object.values(inputsOf)
        .flat()
        .concat(Object.values(t).map((h) => h.name)),
    ),
  ];

  await migrateDatabase(runConfig, projectRoot);
  const schemas = loadSchemas(join(projectRoot, 'schemas'));
  await registerSchemas(config, registryClient(config), schemas);
  const kafka = kafkaClient(config, 'bench-load');
  const redis = new Redis(config.redis.url);
  // Only the portfolios load and the clean-up use it: an outage in between (a restart of the stack's Redis) is logged.
  redis.on('error', (error: Error) => log(`bench Redis client: ${error.message}`));
  const portfolios = JSON.parse(readFileSync(join(projectRoot, 'topologies/portfolios.json'), 'utf8')) as Array<{
    portfolioId: string;
  }>;
  await writeTable(redis, kafka, topology, 'portfolios', portfolios, schemas);
  const admin = kafka.admin();
  await admin.connect();
  for (const name of processors) await ensureTopics(admin, topology, name);

  const fake = await startAnthropicFake({ responder: fleetResponder, batchPollsToComplete: 1 });
  let llmCalls = 0;
  const env: Record<string, string> = {
    AS_FLEET_APP: APPLICATION,
    AS_FLEET_EVENTS_TOPIC: EVENTS_TOPIC,
    AS_CLICKHOUSE_DATABASE: DATABASE,
    ANTHROPIC_API_KEY: 'sk-ant-local-stand-in',
    ANTHROPIC_BASE_URL: fake.url,
  };

  const members: Member[] = [];
  const exits: Array<{ processor: string; code: number | null; signal: string | null; atS: number }> = [];
  const problems: Array<{ processor: string; level: unknown; msg: unknown; at: string }> = [];
  const eventCounts: Record<string, Record<string, number>> = {};
  let stopping = false;
  let fleetStarted = Date.now();
  const onEvent = (member: Member, event: Record<string, unknown>): void => {
    const counts = (eventCounts[member.processor] ??= {});
    const key = String(event.event ?? event.msg ?? 'log');
    counts[key] = (counts[key] ?? 0) + 1;
    // pino levels: 40 warn, 50 error, 60 fatal. Keep the first 200 of them, and only the last 50 lines otherwise.
    if (typeof event.level === 'number' && event.level >= 40 && problems.length < 200)
      problems.push({
        processor: member.processor,
        level: event.level,
        msg: event.msg ?? event.event,
        at: new Date().toISOString(),
      });
    if (member.events.length > 100) member.events.splice(0, member.events.length - 50);
  };
  const start = (name: string): Member => {
    const member =
      name === SINK
        ? startMember(TOPOLOGY_FILE, name, env, { command: ['sink', TOPOLOGY_FILE], onEvent })
        : startMember(TOPOLOGY_FILE, name, env, { onEvent });
    member.child.once('exit', (code, signal) => {
      if (!stopping) {
        exits.push({ processor: name, code, signal, atS: Math.round((Date.now() - fleetStarted) / 1000) });
        log(`MEMBER EXITED: ${name} code ${code} signal ${signal}`);
      }
    });
    return member;
  };

  const samples: Sample[] = [];
  const phaseResults: Array<Phase & { startS: number; endS: number; produced: number; achievedRate: number }> = [];
  let produced = 0;
  let currentPhase = 'start-up';
  let sampler: NodeJS.Timeout | undefined;
  const feedAbort = new AbortController();
  let interrupted = false;
  const onSignal = (signal: string): void => {
    if (interrupted) return;
    interrupted = true;
    log(`${signal}: stopping the feed and the fleet`);
    feedAbort.abort();
  };
  process.once('SIGINT', () => onSignal('SIGINT'));
  process.once('SIGTERM', () => onSignal('SIGTERM'));

  const results = join(projectRoot, 'bench/results', `load-${stamp}.json`);
  const writeResults = (summary: unknown): void => {
    mkdirSync(join(projectRoot, 'bench/results'), { recursive: true });
    writeFileSync(
      results,
      `${JSON.stringify(
        {
          benchmark: 'fleet load (bench/load.ts)',
          command,
          application: APPLICATION,
          database: DATABASE,
          kafkaClient: config.kafka.client,
          cores: cpus().length,
          node: process.version,
          note: 'Other helpers ran tests on the same 2-core machine during this run: see load and machineCpuPct per sample.',
          phases: phaseResults,
          exits,
          problems,
          eventCounts,
          summary,
          samples,
        },
        null,
        1,
      )}\n`,
    );
  };

  let prevTicks = new Map<string, number>();
  let prevMachine = machineTicks();
  let prevAt = Date.now();
  let prevProduced = 0;
  const prevCommitted = new Map<string, number>();
  let sampling = false;
  const takeSample = async (): Promise<void> => {
    if (sampling) return;
    sampling = true;
    try {
      const now = Date.now();
      const dt = (now - prevAt) / 1000;
      // An on-demand sample right after a periodic one would give rates and CPU over a fraction of a second.
      if (samples.length > 0 && dt < 2) return;
      const ends = new Map<string, Map<number, { high: number; low: number }>>();
      for (const topic of allTopics) {
        const offsets = await admin.fetchTopicOffsets(topic);
        ends.set(topic, new Map(offsets.map((o) => [o.partition, { high: Number(o.high), low: Number(o.low) }])));
      }
      const groupSamples: Record<string, GroupSample> = {};
      for (const name of groups) {
        const { lag, committed } = await groupOffsets(admin, `${APPLICATION}.${name}`, inputsOf[name]!, ends);
        const before = prevCommitted.get(name);
        groupSamples[name] = {
          lag,
          committed,
          rate: before === undefined || dt <= 0 ? null : Math.round((committed - before) / dt),
        };
        prevCommitted.set(name, committed);
      }
      const processes: Record<string, ProcessSample> = {};
      const ticks = new Map<string, number>();
      for (const [name, pid, alive] of [
        ...members.map(
          (m) => [m.processor, m.child.pid!, m.child.exitCode === null && m.child.signalCode === null] as const,
        ),
        ['bench (feed + LLM stand-in)', process.pid, true] as const,
      ]) {
        const stat = alive ? procStat(pid) : null;
        const before = prevTicks.get(name);
        if (stat) ticks.set(name, stat.ticks);
        processes[name] = {
          pid,
          rssMiB: round((alive ? rssMiB(pid) : null) ?? 0),
          cpuPct: stat && before !== undefined && dt > 0 ? round(((stat.ticks - before) / CLK_TCK / dt) * 100) : null,
          alive: alive && stat !== null,
        };
      }
      prevTicks = ticks;
      const machine = machineTicks();
      const machineCpuPct =
        machine.total > prevMachine.total
          ? round(((machine.busy - prevMachine.busy) / (machine.total - prevMachine.total)) * 100)
          : null;
      prevMachine = machine;
      llmCalls += fake.calls.filter((c) => c.path.includes('/v1/messages')).length;
      fake.calls.length = 0; // counted: the stand-in keeps every call otherwise
      const [l1, l5, l15] = loadavg();
      samples.push({
        t: Math.round((now - fleetStarted) / 1000),
        at: new Date(now).toISOString(),
        phase: currentPhase,
        produced,
        feedRate: dt > 0 ? Math.round((produced - prevProduced) / dt) : null,
        load: [round(l1!, 2), round(l5!, 2), round(l15!, 2)],
        machineCpuPct,
        llmCalls,
        groups: groupSamples,
        processes,
      });
      prevAt = now;
      prevProduced = produced;
    } catch (error) {
      log(`sample failed: ${(error as Error).message}`);
    } finally {
      sampling = false;
    }
  };

  // Per-minute table: the last sample of each minute.
  const short: Record<string, string> = {
    router: 'router',
    'price-move': 'price',
    volatility: 'vol',
    'volume-spike': 'volsp',
    news: 'news',
    filings: 'filing',
    'portfolio-exposure': 'expo',
    'alert-analyst': 'analyst',
    'digest-window': 'dwin',
    'digest-writer': 'dwrite',
    [SINK]: 'sink',
  };
  const header = (): void =>
    console.log(
      `${'min'.padStart(4)} ${'phase'.padEnd(11)} ${'feed/s'.padStart(6)} ${'load1'.padStart(5)} ${'cpu%'.padStart(4)} | lag: ${groups
        .map((g) => (short[g] ?? g).padStart(7))
        .join(' ')} | RSS MiB: ${groups.map((g) => (short[g] ?? g).padStart(7)).join(' ')}`,
    );
  let printedMinute = -1;
  const printMinute = (): void => {
    const last = samples[samples.length - 1];
    if (!last) return;
    const minute = Math.floor(last.t / 60);
    if (minute === printedMinute) return;
    printedMinute = minute;
    const window = samples.filter((s) => s.t > last.t - 60);
    const feed = mean(window.map((s) => s.feedRate ?? 0));
    const cpu = mean(window.map((s) => s.machineCpuPct ?? 0));
    console.log(
      `${String(minute).padStart(4)} ${last.phase.padEnd(11).slice(0, 11)} ${String(Math.round(feed)).padStart(6)} ${last.load[0].toFixed(2).padStart(5)} ${String(Math.round(cpu)).padStart(4)} | lag: ${groups
        .map((g) => String(last.groups[g]?.lag ?? '?').padStart(7))
        .join(
          ' ',
        )} | RSS MiB: ${groups.map((g) => String(Math.round(last.processes[g]?.rssMiB ?? 0)).padStart(7)).join(' ')}`,
    );
  };

  let summary: unknown;
  let code = 0;
  try {
    fleetStarted = Date.now();
    for (const name of groups) members.push(start(name));
    await waitUntilStarted(members, 180_000);
    log(`fleet: ${members.length} member processes started (${groups.join(', ')})`);
    await takeSample();
    sampler = setInterval(() => {
      void takeSample().then(printMinute);
    }, SAMPLE_S * 1000);
    header();

    const producer = await openMarketProducer(config, { topic: EVENTS_TOPIC, clientId: 'bench-load-feed' });
    try {
      let seed = 7;
      for (const phase of phases) {
        if (interrupted) break;
        currentPhase = phase.name;
        const startS = (Date.now() - fleetStarted) / 1000;
        const before = produced;
        const result = await runFeed(config, {
          seed: seed++,
          symbols: 12,
          rate: phase.rate,
          duration: `${phase.seconds}s`,
          start: Date.now(),
          newsPerMinute: 4,
          filingsPerHour: 60,
          // The demo's planted drop, news burst and 8-K (they need 50 s of feed): alerts for the analyst every phase.
          scenarios: phase.seconds >= 60 ? demoScenarios : [],
          producer,
          signal: feedAbort.signal,
          onProgress: (p) => void (produced = before + p.events),
        });
        produced = before + result.events;
        const endS = (Date.now() - fleetStarted) / 1000;
        phaseResults.push({
          ...phase,
          startS: Math.round(startS),
          endS: Math.round(endS),
          produced: result.events,
          achievedRate: result.eventsPerSecond,
        });
        log(`${phase.name}: the feed produced ${result.events} events at ${result.eventsPerSecond}/s`);
        if (phase.kind === 'ramp' || phases[phases.indexOf(phase) + 1]?.kind === 'ramp') {
          await takeSample();
          const verdict = saturation(samples, phaseResults[phaseResults.length - 1]!, groups);
          if (phase.kind === 'ramp' && verdict.length > 0) {
            log(`${phase.name}: lag grows without bound at ${verdict.map((v) => v.processor).join(', ')}: ramp stops`);
            break;
          }
          // Before the ramp (and between its steps) let the lag drain, so that a step starts from a caught-up fleet.
          if (phases[phases.indexOf(phase) + 1]) await drain(`after ${phase.name}`, Math.min(DRAIN_S, 60));
        }
      }
    } finally {
      await producer.close();
    }
    currentPhase = 'drain';
    await drain('at the end', DRAIN_S);
    await takeSample();
    summary = summarise(
      samples,
      phaseResults,
      groups,
      members.map((m) => m.processor).concat(['bench (feed + LLM stand-in)']),
    );
    writeResults(summary);
    printSummary(summary as Summary);
    log(`results: ${results}`);
  } catch (error) {
    code = 1;
    log(`failed: ${(error as Error).stack ?? error}`);
    writeResults({ error: String((error as Error).message ?? error) });
    log(`partial results: ${results}`);
  } finally {
    if (sampler) clearInterval(sampler);
    stopping = true;
    const codes = await stopMembers(members, 20_000);
    log(`fleet: stopped, exit codes ${codes.join(', ')}`);
    await fake.close();
    if (!opts.keep) await cleanUp(admin, redis, runConfig, allTopics, groups);
    await admin.disconnect();
    redis.disconnect();
  }
  return code;

  async function drain(why: string, seconds: number): Promise<void> {
    const deadline = Date.now() + seconds * 1000;
    for (;;) {
      await takeSample();
      const last = samples[samples.length - 1]!;
      // Transactional topics: each commit leaves a marker, so a caught-up group shows a few records of "lag".
      const behind = groups.filter((g) => (last.groups[g]?.lag ?? 0) > 200);
      if (behind.length === 0) {
        log(`drained ${why}`);
        return;
      }
      if (Date.now() > deadline) {
        log(`not drained ${why} after ${seconds} s: ${behind.map((g) => `${g} ${last.groups[g]!.lag}`).join(', ')}`);
        return;
      }
      await sleep(5_000);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Analysis

interface SaturationVerdict {
  processor: string;
  lagGrowthPerS: number;
  endLag: number;
}

/**
 * A processor is saturated in a phase when its lag keeps growing through the second half of the phase: a
 * least-squares slope above 5% of the rate records arrive at its inputs (committed + lag growth), and above 1,000
 * records over that half. Downstream processors see a fraction of the feed, so the bar is their own arrival rate.
 */
function saturation(
  samples: Sample[],
  phase: { startS: number; endS: number; rate: number; name: string },
  groups: string[],
): SaturationVerdict[] {
  const mid = (phase.startS + phase.endS) / 2;
  const window = samples.filter((s) => s.t >= mid && s.t <= phase.endS + 15);
  const verdicts: SaturationVerdict[] = [];
  if (window.length < 3) return verdicts;
  const a = window[0]!;
  const b = window[window.length - 1]!;
  const span = b.t - a.t || 1;
  for (const g of groups) {
    const points = window.map((s) => [s.t, s.groups[g]?.lag ?? 0] as [number, number]);
    const growth = slope(points);
    const endLag = points[points.length - 1]![1];
    const arrival = (b.groups[g]!.committed - a.groups[g]!.committed + (b.groups[g]!.lag - a.groups[g]!.lag)) / span;
    if (growth > 0.05 * arrival && growth * span > 1000)
      verdicts.push({ processor: g, lagGrowthPerS: Math.round(growth), endLag });
  }
  return verdicts.sort((x, y) => y.lagGrowthPerS - x.lagGrowthPerS);
}

interface Summary {
  lagByPhase: Record<string, Record<string, { maxLag: number; endLag: number; lagSlopePerMin: number }>>;
  rss: Record<
    string,
    { first5MinAvgMiB: number; last5MinAvgMiB: number; slopeMiBPerMin: number; maxMiB: number; flat: boolean }
  >;
  cpuAvgPctSteady: Record<string, number>;
  saturation: Array<{ phase: string; rate: number; achievedFeedRate: number; saturated: SaturationVerdict[] }>;
  saturatesAt: string;
  throughput: Record<
    string,
    {
      sustainedPerS: number;
      sustainedPhase: string;
      saturated: boolean;
      eventsPerDay: number;
      cpuPctAtThatRate: number;
      perCoreSecond: number | null;
      eventsPerDayAtOneCore: number | null;
    }
  >;
  machine: { load1Avg: number; load1Max: number; cpuPctAvg: number };
  llmCalls: number;
}

function summarise(
  samples: Sample[],
  phases: Array<Phase & { startS: number; endS: number; produced: number; achievedRate: number }>,
  groups: string[],
  processes: string[],
): Summary {
  const lagByPhase: Summary['lagByPhase'] = {};
  for (const phase of phases) {
    const inPhase = samples.filter((s) => s.t >= phase.startS && s.t <= phase.endS + 5);
    lagByPhase[phase.name] = Object.fromEntries(
      groups.map((g) => {
        const lags = inPhase.map((s) => s.groups[g]?.lag ?? 0);
        return [
          g,
          {
            maxLag: Math.max(0, ...lags),
            endLag: lags[lags.length - 1] ?? 0,
            lagSlopePerMin: round(slope(inPhase.map((s) => [s.t / 60, s.groups[g]?.lag ?? 0])), 0),
          },
        ];
      }),
    );
  }
  // Memory over the steady phases (the 10× load and the soak): first 5 minutes against the last 5.
  const steady = phases.filter((p) => p.kind !== 'ramp');
  const steadyFrom = steady[0]?.startS ?? 0;
  const steadyTo = steady[steady.length - 1]?.endS ?? 0;
  const steadySamples = samples.filter((s) => s.t >= steadyFrom && s.t <= steadyTo);
  const rss: Summary['rss'] = {};
  const cpuAvgPctSteady: Record<string, number> = {};
  for (const p of processes) {
    const points = steadySamples
      .filter((s) => s.processes[p]?.alive)
      .map((s) => [(s.t - steadyFrom) / 60, s.processes[p]!.rssMiB] as [number, number]);
    const first = mean(points.filter(([m]) => m < 5).map(([, r]) => r));
    const lastFrom = (steadyTo - steadyFrom) / 60 - 5;
    const last = mean(points.filter(([m]) => m >= lastFrom).map(([, r]) => r));
    const slopeMiB = slope(points);
    rss[p] = {
      first5MinAvgMiB: round(first),
      last5MinAvgMiB: round(last),
      slopeMiBPerMin: round(slopeMiB, 2),
      maxMiB: round(Math.max(0, ...points.map(([, r]) => r))),
      // Flat: under 10% and 20 MiB between the first and the last five minutes.
      flat: Math.abs(last - first) < Math.max(20, 0.1 * first),
    };
    cpuAvgPctSteady[p] = round(
      mean(steadySamples.map((s) => s.processes[p]?.cpuPct).filter((c): c is number => typeof c === 'number')),
    );
  }
  const saturationSteps: Summary['saturation'] = phases
    .filter((p) => p.kind === 'ramp')
    .map((p) => ({
      phase: p.name,
      rate: p.rate,
      achievedFeedRate: p.achievedRate,
      saturated: saturation(samples, p, groups),
    }));
  const firstSaturated = saturationSteps.find((s) => s.saturated.length > 0);
  const saturatesAt = firstSaturated
    ? `${firstSaturated.phase} (feed achieved ${firstSaturated.achievedFeedRate}/s): first ${firstSaturated.saturated[0]!.processor} (lag +${firstSaturated.saturated[0]!.lagGrowthPerS}/s)${
        firstSaturated.saturated.length > 1
          ? `, also ${firstSaturated.saturated
              .slice(1)
              .map((v) => v.processor)
              .join(', ')}`
          : ''
      }`
    : saturationSteps.length > 0
      ? `not within the ramp (highest step ${saturationSteps[saturationSteps.length - 1]!.phase}, feed achieved ${saturationSteps[saturationSteps.length - 1]!.achievedFeedRate}/s)`
      : 'no ramp run';

  // Throughput per member: its committed records per second over a phase's second half. The saturated phase's rate
  // is its ceiling; otherwise the highest rate it kept up with (a lower bound of its ceiling).
  const throughput: Summary['throughput'] = {};
  for (const g of groups) {
    let best = { rate: 0, phase: '', saturated: false, cpu: 0 };
    for (const phase of phases) {
      const mid = (phase.startS + phase.endS) / 2;
      const window = samples.filter((s) => s.t > mid && s.t <= phase.endS);
      if (window.length < 2) continue;
      const a = window[0]!;
      const b = window[window.length - 1]!;
      const rate = (b.groups[g]!.committed - a.groups[g]!.committed) / (b.t - a.t || 1);
      const cpu = mean(window.map((s) => s.processes[g]?.cpuPct).filter((c): c is number => typeof c === 'number'));
      const sat = saturation(samples, phase, groups).some((v) => v.processor === g);
      if (sat || (!best.saturated && rate > best.rate)) best = { rate, phase: phase.name, saturated: sat, cpu };
      if (sat) break;
    }
    const perCore = best.cpu > 0 ? best.rate / (best.cpu / 100) : null;
    throughput[g] = {
      sustainedPerS: round(best.rate, best.rate < 100 ? 2 : 0),
      sustainedPhase: best.phase,
      saturated: best.saturated,
      eventsPerDay: Math.round(best.rate * 86_400),
      cpuPctAtThatRate: round(best.cpu),
      perCoreSecond: perCore === null ? null : Math.round(perCore),
      eventsPerDayAtOneCore: perCore === null ? null : Math.round(perCore * 86_400),
    };
  }
  const loads = samples.map((s) => s.load[0]);
  return {
    lagByPhase,
    rss,
    cpuAvgPctSteady,
    saturation: saturationSteps,
    saturatesAt,
    throughput,
    machine: {
      load1Avg: round(mean(loads), 2),
      load1Max: round(Math.max(...loads), 2),
      cpuPctAvg: round(mean(samples.map((s) => s.machineCpuPct ?? 0))),
    },
    llmCalls: samples[samples.length - 1]?.llmCalls ?? 0,
  };
}

function printSummary(s: Summary): void {
  console.log('\nlag per phase (max / end / slope per min):');
  for (const [phase, byGroup] of Object.entries(s.lagByPhase))
    console.log(
      `  ${phase}: ${Object.entries(byGroup)
        .map(([g, v]) => `${g} ${v.maxLag}/${v.endLag}/${v.lagSlopePerMin}`)
        .join(', ')}`,
    );
  console.log('\nRSS over the steady phases (first 5 min avg → last 5 min avg, slope, max, CPU avg):');
  for (const [p, v] of Object.entries(s.rss))
    console.log(
      `  ${p.padEnd(28)} ${v.first5MinAvgMiB} → ${v.last5MinAvgMiB} MiB, ${v.slopeMiBPerMin} MiB/min, max ${v.maxMiB} MiB, ${v.flat ? 'flat' : 'NOT FLAT'}, CPU ${s.cpuAvgPctSteady[p]}%`,
    );
  console.log(`\nsaturation: ${s.saturatesAt}`);
  for (const step of s.saturation)
    console.log(
      `  ${step.phase} (feed ${step.achievedFeedRate}/s): ${step.saturated.map((v) => `${v.processor} +${v.lagGrowthPerS}/s (lag ${v.endLag})`).join(', ') || 'kept up'}`,
    );
  console.log('\nper member: sustained records/s (phase), events/day, CPU at that rate, events/day at one full core:');
  for (const [g, v] of Object.entries(s.throughput))
    console.log(
      `  ${g.padEnd(20)} ${v.saturated ? '' : '≥'}${v.sustainedPerS}/s (${v.sustainedPhase}${v.saturated ? ', saturated' : ''}) = ${v.eventsPerDay.toLocaleString('en-US')}/day, CPU ${v.cpuPctAtThatRate}%, ${v.eventsPerDayAtOneCore?.toLocaleString('en-US') ?? '-'}/day/core`,
    );
  console.log(
    `\nmachine: load1 avg ${s.machine.load1Avg}, max ${s.machine.load1Max}; CPU ${s.machine.cpuPctAvg}% of all cores; LLM calls ${s.llmCalls}`,
  );
}

async function cleanUp(
  admin: KafkaAdmin,
  redis: Redis,
  runConfig: Config,
  topics: string[],
  groups: string[],
): Promise<void> {
  try {
    await admin.deleteGroups(groups.map((g) => `${APPLICATION}.${g}`));
  } catch (error) {
    log(`clean-up: consumer groups not deleted: ${(error as Error).message}`);
  }
  try {
    const existing = new Set(await admin.listTopics());
    await admin.deleteTopics({ topics: [...existing].filter((t) => t.startsWith(`${APPLICATION}.`)) });
  } catch (error) {
    log(`clean-up: topics not deleted (${topics.length}): ${(error as Error).message}`);
  }
  try {
    let cursor = '0';
    let deleted = 0;
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `*${APPLICATION}*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) deleted += await redis.unlink(...keys);
    } while (cursor !== '0');
    log(`clean-up: ${deleted} Redis keys of ${APPLICATION} deleted`);
  } catch (error) {
    log(`clean-up: Redis keys not deleted: ${(error as Error).message}`);
  }
  const ch = openClickHouse(runConfig);
  try {
    await ch.command({ query: `DROP DATABASE IF EXISTS ${DATABASE}` });
  } catch (error) {
    log(`clean-up: ClickHouse database ${DATABASE} not dropped: ${(error as Error).message}`);
  } finally {
    await ch.close();
  }
  log(`clean-up: topics, groups, Redis keys and the database of ${APPLICATION} deleted (--keep keeps them)`);
}

process.exitCode = await main();
