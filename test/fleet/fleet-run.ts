/**
 * One run of the whole market-monitoring fleet on the real stack, as the golden-scenario, crash and LLM-failure
 * tests use it: every processor and the ClickHouse sink as its own member process, a seeded feed with planted
 * scenarios, and the answers of the documented ClickHouse queries at the end.
 *
 * Each run has its own application (topics, consumer groups, Redis keys) and its own ClickHouse database, so runs
 * never see each other's data. The feed covers eight minutes of event time ending just before an hour boundary H,
 * and the members' wall clock is shifted (`AS_WALL_CLOCK_OFFSET_MS`) to stand two minutes before H: the hour's
 * digests then close for real, by wall-clock punctuation, within the test, exactly as they would at the top of a
 * live hour.
 *
 * `expectedFleetOutput` computes what a crash-free fleet must produce, with the in-memory test driver over the same
 * events: the real run's findings are compared with it one to one.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { ensureTopics } from '../../runtime/engine/topics.ts';
import { loadSchemas, registerSchemas } from '../../runtime/serde/schemas.ts';
import { registryClient } from '../../runtime/serde/avro.ts';
import { writeTable } from '../../runtime/state/tables.ts';
import { TopologyTestDriver } from '../../runtime/testing/driver.ts';
import { migrateDatabase } from '../../sinks/clickhouse/schema.ts';
import { openClickHouse } from '../../sinks/clickhouse/client.ts';
import { marketFeed, runFeed, type FeedEvent } from '../../connectors/synthetic-feed.ts';
import { marketSignals, type MarketSignalsOptions } from '../../topologies/market-signals.ts';
import { startMember, stopMembers, waitUntilStarted, type Member } from '../../cli/fleet.ts';
import { projectRoot } from '../../cli/paths.ts';
import { mulberry32 } from '../support/events.ts';
import { config, kafkaClient, uniqueName } from '../support/stack.ts';
import { fleetClickHouseUsers } from '../support/clickhouse-users.ts';
import type { Config } from '../../runtime/config/index.ts';
import type { Alert, Digest, Finding, Portfolio, Severity } from '../../schemas/generated/types.ts';
import { severities, severityRank } from '../../processors/finding.ts';

const MINUTE = 60_000;
const SESSION_TIMEOUT_MS = 6_000;
const HOUR = 60 * MINUTE;
const TOPOLOGY_FILE = join(projectRoot, 'topologies/market-signals.ts');
export const schemas = loadSchemas(join(projectRoot, 'schemas'));
export const portfolios = JSON.parse(
  readFileSync(join(projectRoot, 'topologies/portfolios.json'), 'utf8'),
) as Portfolio[];

/** The planted events: a 6% drop over two minutes, a 7× volume spike (planted 7×, it measures between the high (5×) and critical (10×) thresholds at every hour), a burst of four negative stories, an 8-K. */
export const GOLDEN_SCENARIOS = [
  'drop:ACME:6%:2m@1m',
  'newsBurst:CRUX:4:1m@3m',
  'filing:DYNA:8-K:5.02@4m',
  'volumeSpike:BOLT:7x:1m@6m',
];
export const PLANTED_SYMBOLS = ['ACME', 'CRUX', 'DYNA', 'BOLT'];

/** The planted findings and their documented severities (docs/agents.md): market-wide, before exposure. */
export const PLANTED: ReadonlyArray<{ symbol: string; agent: string; severity: Severity }> = [
  { symbol: 'ACME', agent: 'price-move', severity: 'high' },
  { symbol: 'CRUX', agent: 'news', severity: 'high' },
  { symbol: 'DYNA', agent: 'filings', severity: 'high' },
  { symbol: 'BOLT', agent: 'volume-spike', severity: 'high' },
];

/** A finding as the driver gives it or as ClickHouse stores it, reduced to what the planted check reads. */
export interface FindingSummary {
  symbol: string;
  agent: string;
  rule: string;
  severity: Severity;
  portfolioId: string;
}

/**
 * What differs from the documented golden scenario, in words ([] when nothing does): the highest market-wide
 * severity of each planted finding, and nothing at high or above on any other symbol, market-wide or for a portfolio.
 */
export function plantedDifferences(findings: readonly FindingSummary[]): string[] {
  const problems: string[] = [];
  for (const planted of PLANTED) {
    const found = findings.filter(
      (f) => f.portfolioId === '' && f.symbol === planted.symbol && f.agent === planted.agent,
    );
    const highest = found.length === 0 ? 'none' : severities[Math.max(...found.map((f) => severityRank(f.severity)))];
    if (highest !== planted.severity)
      problems.push(`${planted.agent} on ${planted.symbol}: expected ${planted.severity}, got ${highest}`);
  }
  for (const f of findings) {
    if (!PLANTED_SYMBOLS.includes(f.symbol) && severityRank(f.severity) >= severityRank('high')) {
      problems.push(`unplanted ${f.severity}: ${f.symbol} ${f.agent}/${f.rule} ${f.portfolioId || '(market-wide)'}`);
    }
  }
  return problems;
}
/** How late a finding may reach its hour's digest; the runs close the hour this long after H. */
export const DIGEST_GRACE = '30s';
const GRACE_MS = 30_000;

/** The feed: eight minutes of a quiet 12-symbol market plus the planted scenarios, ending one minute before `hour`. */
export function goldenFeed(hour: number) {
  return {
    seed: 11,
    symbols: 12,
    rate: 40,
    duration: '8m',
    start: hour - 9 * MINUTE,
    newsPerMinute: 2,
    filingsPerHour: 20,
    scenarios: GOLDEN_SCENARIOS,
  } as const;
}

/** The last hour boundary: the feed then lies in the past, where the broker accepts its timestamps. */
export function lastHourBoundary(now = Date.now()): number {
  return Math.floor(now / HOUR) * HOUR;
}

export interface ExpectedOutput {
  /** Market-wide findings (portfolio ''), then the per-portfolio ones. */
  findings: Finding[];
  portfolioFindings: Finding[];
  alerts: Alert[];
  digests: Digest[];
}

/** What a crash-free fleet computes from the golden feed: the test driver, with the LLM answering nothing (rules-only). */
export function expectedFleetOutput(hour: number): ExpectedOutput {
  const application = 'expected';
  const driver = new TopologyTestDriver(
    marketSignals({ application, digestSize: '1h', digestGrace: DIGEST_GRACE }),
    schemas,
    {
      wallClock: hour - 10 * MINUTE,
      services: { analysis: () => new Map(), digest: () => new Map() },
    },
  );
  driver.setTable('portfolios', portfolios);
  for (const event of marketFeed(goldenFeed(hour))) driver.pipe<FeedEvent['value']>('market.events', event);
  driver.advanceWallClock(10 * MINUTE + GRACE_MS + 1_000);
  const values = <V>(topic: string): V[] => driver.readOutput<V>(`${application}.${topic}`).map((r) => r.value);
  return {
    findings: values<Finding>('findings'),
    portfolioFindings: values<Finding>('portfolio-findings'),
    alerts: values<Alert>('alerts'),
    digests: values<Digest>('digests'),
  };
}

/**
 * Members run somewhere other than as this test's child processes: podman pods played from the Kubernetes
 * manifests, say. The run hands it the members' environment and reads the same ClickHouse answers.
 */
export interface FleetLauncher {
  /** Starts every member (`names`: processors and the sink) with this environment; resolves when each has started. */
  start(env: Record<string, string>, names: string[]): Promise<void>;
  /** Runs while the feed is produced (scaling, a canary); the run waits for it before it waits for the results. */
  duringFeed?(feed: { done: Promise<unknown> }): Promise<void>;
  /** Members that exited on their own so far. */
  crashed(): Array<{ processor: string; code: number | null }>;
  /** Stops every member (SIGTERM, then its grace period) and returns their exit codes; once stopped, returns []. */
  stop(): Promise<Array<number | null>>;
}

export interface FleetRunOptions {
  label: string;
  hour: number;
  /** Start the members through this instead of as child processes (not with chaos or holdBack). */
  launcher?: FleetLauncher;
  /** How long before H the members' clock stands when they start (default 2 min): the feed is paced to end 45 s before H. */
  startLeadMs?: number;
  /** The LLM the members use: the local stand-in's URL, or nothing (rules-only, no key). */
  anthropic?: { baseUrl: string; apiKey?: string };
  /** Extra environment for every member (e.g. budgets, timeouts). */
  env?: Record<string, string>;
  /**
   * Catch-up: the whole feed is produced before any member starts, and the members' clock already stands past the
   * hour's close (H + 1 min), as after an outage. The agents then race through the backlog at their own speeds, so
   * findings reach the digest window after it closed the hour by the wall clock: they must amend the digests.
   */
  catchUp?: boolean;
  /**
   * One agent held back until the hour's digest of a portfolio is in ClickHouse, then started: its findings reach the
   * digest window after the hour closed, whatever the machine's speed (an agent that was down, or slower than the rest).
   */
  holdBack?: { processor: string; untilDigestOf: string };
  /**
   * Kill a random member with SIGKILL every `everyMs` and start it again, until the feed has ended plus `afterFeedMs`.
   * Every `zombieEvery`-th time the member is frozen (SIGSTOP) instead, a replacement takes its partitions after the
   * session timeout, and the frozen one is thawed (SIGCONT) as a zombie that must be fenced, then stays as a second member.
   * At the `wipeRedisAt`-th event every Redis key of the application is deleted — window state, checkpoints, the
   * portfolio table, LLM budgets: what a FLUSHALL or a failover to an empty replica does to it (the shared Redis
   * of other runs is spared). Kafka must bring it all back.
   */
  chaos?: { seed: number; everyMs: number; afterFeedMs: number; zombieEvery?: number; wipeRedisAt?: number };
  /** Wait for these alert ids in ClickHouse, and for a digest of each of these portfolios (for the hour before `hour`). */
  awaitAlerts: string[];
  awaitDigests: string[];
  timeoutMs: number;
  log?: (line: string) => void;
}

export type Row = Record<string, unknown>;

export interface FleetRunResult {
  application: string;
  database: string;
  findings: Row[];
  alerts: Row[];
  digests: Row[];
  llmCalls: Row[];
  kills: string[];
  /** Members frozen past the session timeout and thawed after a replacement took over. */
  zombies: string[];
  /** Redis keys of the application deleted mid-run (chaos.wipeRedisAt). */
  wipedKeys: number;
  /** Exit codes of the members alive at the end (stopped with SIGTERM). */
  exitCodes: Array<number | null>;
  /** Members that exited on their own, with their codes. */
  crashed: Array<{ processor: string; code: number | null }>;
}

export function clickhouseConfig(database: string): Config {
  return { ...config, clickhouse: { ...config.clickhouse, database } };
}

/** Digests of the hour whose counts differ from the findings and alerts ClickHouse holds for their portfolio and hour. */
async function digestsBehindClickHouse(query: (sql: string) => Promise<Row[]>, hourStart: number): Promise<string[]> {
  const hour = `toUnixTimestamp(window_start) >= ${hourStart} AND toUnixTimestamp(window_start) < ${hourStart + 3600}`;
  const countBy = async (table: string): Promise<Map<string, number>> =>
    new Map(
      (
        await query(
          `SELECT portfolio_id, count() AS n FROM ${table} FINAL WHERE portfolio_id != '' AND ${hour} GROUP BY portfolio_id`,
        )
      ).map((r) => [String(r.portfolio_id), Number(r.n)]),
    );
  const [findings, alerts] = [await countBy('findings'), await countBy('alerts')];
  const digests = await query(
    `SELECT portfolio_id, finding_count, alert_count FROM digests FINAL WHERE toUnixTimestamp(hour_start) = ${hourStart}`,
  );
  return digests
    .filter(
      (d) =>
        Number(d.finding_count) !== (findings.get(String(d.portfolio_id)) ?? 0) ||
        Number(d.alert_count) !== (alerts.get(String(d.portfolio_id)) ?? 0),
    )
    .map(
      (d) =>
        `digest ${d.portfolio_id} counts ${d.finding_count}/${d.alert_count}, ClickHouse ${findings.get(String(d.portfolio_id)) ?? 0}/${alerts.get(String(d.portfolio_id)) ?? 0}`,
    );
}

export interface PreparedFleet {
  database: string;
  application: string;
  eventsTopic: string;
  topology: ReturnType<typeof marketSignals>;
  chConfig: Config;
}

/**
 * A fleet's own ClickHouse database, migrated; the schemas registered; the portfolios table loaded; every
 * processor's topics created. Application and database share one unique name, so runs never see each other.
 */
export async function prepareFleet(
  label: string,
  topologyOptions: Omit<MarketSignalsOptions, 'application' | 'eventsTopic'> = {},
): Promise<PreparedFleet> {
  const database = uniqueName(label);
  const application = database.replaceAll('_', '-');
  const eventsTopic = `${application}.market.events`;
  const topology = marketSignals({ application, eventsTopic, ...topologyOptions });
  const chConfig = clickhouseConfig(database);
  await migrateDatabase(chConfig, projectRoot);
  await registerSchemas(config, registryClient(config), schemas);
  const redis = new Redis(config.redis.url);
  await writeTable(redis, kafkaClient(), topology, 'portfolios', portfolios, schemas);
  redis.disconnect();
  const admin = kafkaClient().admin();
  await admin.connect();
  for (const name of Object.keys(topology.processors)) await ensureTopics(admin, topology, name);
  await admin.disconnect();
  return { database, application, eventsTopic, topology, chConfig };
}

export async function runFleet(options: FleetRunOptions): Promise<FleetRunResult> {
  const log = options.log ?? (() => {});
  const { database, application, eventsTopic, topology, chConfig } = await prepareFleet(`golden_${options.label}`, {
    digestSize: '1h',
    digestGrace: DIGEST_GRACE,
  });
  // The sink and the members' LLM audit write as the run's least-privilege sink user (docs/security.md).
  const clickhouseUsers = await fleetClickHouseUsers(database);

  const feed = goldenFeed(options.hour);
  const launcher = options.launcher;
  if (launcher && (options.chaos || options.holdBack))
    throw new Error('runFleet: a launcher runs neither chaos nor holdBack');
  const startLeadMs = options.startLeadMs ?? 2 * MINUTE;
  let produced: { events: number; seconds: number } | undefined;
  if (options.catchUp) produced = await runFeed(config, { ...feed, topic: eventsTopic, pace: false });
  // The members' clock stands two minutes (startLeadMs) before H when they start (one minute after it in a catch-up).
  const offsetMs = options.hour + (options.catchUp ? MINUTE : -startLeadMs) - Date.now();
  const env: Record<string, string> = {
    AS_FLEET_APP: application,
    AS_FLEET_EVENTS_TOPIC: eventsTopic,
    AS_FLEET_DIGEST_SIZE: '1h',
    AS_FLEET_DIGEST_GRACE: DIGEST_GRACE,
    ...clickhouseUsers.env,
    AS_CLICKHOUSE_DATABASE: database,
    AS_WALL_CLOCK_OFFSET_MS: String(offsetMs),
    AS_CONSUMER_SESSION_TIMEOUT_MS: String(SESSION_TIMEOUT_MS),
    ANTHROPIC_API_KEY: options.anthropic ? (options.anthropic.apiKey ?? 'sk-ant-local-stand-in') : '',
    ...(options.anthropic ? { ANTHROPIC_BASE_URL: options.anthropic.baseUrl } : {}),
    ...options.env,
  };
  const names = [...Object.keys(topology.processors), 'clickhouse-sink'];
  const start = (name: string): Member =>
    name === 'clickhouse-sink'
      ? startMember(TOPOLOGY_FILE, name, env, { command: ['sink', TOPOLOGY_FILE] })
      : startMember(TOPOLOGY_FILE, name, env);
  const members = new Map<string, Member>(
    launcher ? [] : names.filter((name) => name !== options.holdBack?.processor).map((name) => [name, start(name)]),
  );
  const kills: string[] = [];
  const zombies: string[] = [];
  let wipedKeys = 0;
  /** Thawed zombies, members still. */
  const extras: Member[] = [];
  const crashed: Array<{ processor: string; code: number | null }> = [];
  const ch = openClickHouse(chConfig);
  const query = async (sql: string): Promise<Row[]> =>
    (await ch.query({ query: sql, format: 'JSONEachRow' })).json<Row>();
  try {
    if (launcher) await launcher.start(env, names);
    else await waitUntilStarted([...members.values()], 120_000);
    // The feed ends 45 s (members' clock) before H, whatever the start-up took; the hour closes at H + grace.
    const membersNow = Date.now() + offsetMs;
    const wallMs = options.hour - 45_000 - membersNow;
    if (!options.catchUp && wallMs < 15_000)
      throw new Error(
        `the members took too long to start: ${Math.round((membersNow - (options.hour - startLeadMs)) / 1000)} s`,
      );
    const speed = (8 * MINUTE) / wallMs;
    log(
      `${application}: fleet of ${launcher ? names.length : members.size} started; ${options.catchUp ? 'catching up on the feed produced before' : `feed of 8 min at ${speed.toFixed(1)}× real time`}`,
    );

    let chaos: Promise<void> = Promise.resolve();
    const feedDone = { at: Number.POSITIVE_INFINITY };
    if (options.chaos) {
      const random = mulberry32(options.chaos.seed);
      const { everyMs, afterFeedMs, zombieEvery } = options.chaos;
      let events = 0;
      chaos = (async () => {
        while (Date.now() < feedDone.at + afterFeedMs) {
          await sleep(everyMs / 2 + random() * everyMs);
          const name = names[Math.floor(random() * names.length)]!;
          const victim = members.get(name)!;
          if (victim.child.exitCode !== null || victim.child.signalCode !== null) continue;
          events += 1;
          if (options.chaos?.wipeRedisAt === events) {
            const wiper = new Redis(config.redis.url);
            let cursor = '0';
            do {
              const [next, keys] = await wiper.scan(cursor, 'MATCH', `*${application}*`, 'COUNT', 1000);
              cursor = next;
              if (keys.length > 0) await wiper.del(...keys);
              wipedKeys += keys.length;
            } while (cursor !== '0');
            wiper.disconnect();
            continue;
          }
          if (zombieEvery && events % zombieEvery === 0) {
            // Frozen past the session timeout: the replacement takes its partitions (and fences its producers);
            // thawed, the old member finds itself a zombie, and then stays on as a second member.
            victim.child.kill('SIGSTOP');
            members.set(name, start(name));
            await sleep(SESSION_TIMEOUT_MS + 4_000);
            victim.child.kill('SIGCONT');
            extras.push(victim);
            zombies.push(name);
            continue;
          }
          const exited = new Promise((resolve) => victim.child.once('exit', resolve));
          victim.child.kill('SIGKILL');
          await exited;
          kills.push(name);
          members.set(name, start(name));
        }
      })();
    }
    const feeding = produced
      ? Promise.resolve(produced)
      : runFeed(config, { ...feed, topic: eventsTopic, pace: true, speed });
    // Whatever the launcher does while the feed runs, its failure is the run's (and never an unhandled rejection).
    const during = launcher?.duringFeed?.({ done: feeding.catch(() => undefined) }).then(
      () => undefined,
      (error: unknown) => ({ error }),
    );
    produced = await feeding;
    const duringResult = await during;
    if (duringResult) throw duringResult.error;
    if (options.holdBack) {
      const { processor, untilDigestOf } = options.holdBack;
      const hourStartS = Math.floor((options.hour - HOUR) / 1000);
      const until = Date.now() + options.timeoutMs;
      while (
        (
          await query(
            `SELECT digest_id FROM digests FINAL WHERE portfolio_id = '${untilDigestOf}' AND toUnixTimestamp(hour_start) = ${hourStartS}`,
          )
        ).length === 0
      ) {
        if (Date.now() > until)
          throw new Error(`${application}: no digest of ${untilDigestOf} within ${options.timeoutMs} ms`);
        await sleep(1_000);
      }
      log(`${application}: ${untilDigestOf}'s digest is written; starting ${processor}`);
      const late = start(processor);
      members.set(processor, late);
      await waitUntilStarted([late], 120_000);
    }
    feedDone.at = Date.now();
    await chaos;
    log(
      `${application}: feed produced ${produced.events} events in ${produced.seconds.toFixed(1)} s; ${kills.length} kills: ${kills.join(', ')}`,
    );

    const hourStart = Math.floor((options.hour - HOUR) / 1000);
    const deadline = Date.now() + options.timeoutMs;
    for (;;) {
      for (const [name, member] of members)
        if (member.child.exitCode !== null && !crashed.some((c) => c.processor === name))
          crashed.push({ processor: name, code: member.child.exitCode });
      for (const c of launcher?.crashed() ?? []) if (!crashed.some((k) => k.processor === c.processor)) crashed.push(c);
      const alerts = await query(`SELECT alert_id FROM alerts FINAL`);
      const digests = await query(`SELECT portfolio_id FROM digests FINAL WHERE hour_start = ${hourStart}`);
      const haveAlerts = new Set(alerts.map((a) => String(a.alert_id)));
      const haveDigests = new Set(digests.map((d) => String(d.portfolio_id)));
      const missing = [
        ...options.awaitAlerts.filter((id) => !haveAlerts.has(id)),
        ...options.awaitDigests.filter((p) => !haveDigests.has(p)).map((p) => `digest ${p}`),
      ];
      // In a catch-up, a digest may be written before findings that arrive late for its hour: wait for its amended
      // versions, until every digest counts what ClickHouse holds (or the deadline fails the run).
      if (options.catchUp && missing.length === 0) missing.push(...(await digestsBehindClickHouse(query, hourStart)));
      if (missing.length === 0) break;
      if (Date.now() > deadline)
        throw new Error(
          `${application}: after ${options.timeoutMs} ms still missing ${missing.length}: ${missing.slice(0, 5).join(', ')}`,
        );
      await sleep(2_000);
    }
    // Everything awaited is in; a moment more for anything that should not be there (a duplicate, a second digest).
    await sleep(3_000);
    const from = Math.floor((options.hour - HOUR) / 1000);
    return {
      application,
      database,
      findings: await query(
        `SELECT finding_id, agent, rule, symbol, portfolio_id, severity, toUnixTimestamp(window_start) AS window_start, evidence FROM findings FINAL WHERE window_start >= ${from} ORDER BY finding_id`,
      ),
      alerts: await query(
        `SELECT alert_id, finding_ids, symbol, portfolio_id, severity, toUnixTimestamp(window_start) AS window_start, analysis, recommended_action, model FROM alerts FINAL ORDER BY alert_id`,
      ),
      digests: await query(
        `SELECT digest_id, portfolio_id, toUnixTimestamp(hour_start) AS hour_start, finding_count, alert_count, summary, model FROM digests FINAL ORDER BY portfolio_id, hour_start`,
      ),
      llmCalls: await query(`SELECT * FROM llm_calls FINAL`),
      kills,
      zombies,
      wipedKeys,
      crashed,
      exitCodes: launcher ? await launcher.stop() : await stopMembers([...members.values(), ...extras]),
    };
  } finally {
    await stopMembers([...members.values(), ...extras]);
    await launcher?.stop();
    await ch.close();
    clickhouseUsers.remove();
  }
}
