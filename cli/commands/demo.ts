/**
 * The README's main job: the market-monitoring fleet on the local stack. It starts the stack, registers the
 * schemas, loads the portfolios, starts every agent as its own consumer-group member process plus the ClickHouse
 * sink, runs the synthetic feed with planted scenarios (a drop, a news burst, an 8-K), then prints what the fleet
 * found, alerted and digested, from ClickHouse, and stops the processes it started.
 *
 * Digests are hourly in production; the demo runs them per minute so that a one-minute feed shows them.
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { ensureTopics } from '../../runtime/engine/topics.ts';
import { loadConfig } from '../../runtime/config/index.ts';
import { createStackContext, stackUp } from '../../infra/local/stack.ts';
import { loadSchemas, registerSchemas } from '../../runtime/serde/schemas.ts';
import { registryClient } from '../../runtime/serde/avro.ts';
import { writeTable } from '../../runtime/state/tables.ts';
import { migrateDatabase } from '../../sinks/clickhouse/schema.ts';
import { runFeed } from '../../connectors/synthetic-feed.ts';
import { marketSignals } from '../../topologies/market-signals.ts';
import { startMember, stopMembers, waitUntilStarted, type Member } from '../fleet.ts';
import { digestRows, runNamedQuery } from './query.ts';
import { formatRows } from '../format.ts';
import { openClickHouse } from '../../sinks/clickhouse/client.ts';
import { projectRoot } from '../paths.ts';
import { usageError } from '../args.ts';
import type { Command } from '../main.ts';
import { kafkaClient } from '../../runtime/kafka/client.ts';

export const demoScenarios = ['drop:ACME:8%:40s@10s', 'newsBurst:CRUX:4:20s@25s', 'filing:DYNA:8-K:5.02@35s'];

const options = {
  duration: { type: 'string', default: '60' },
  rate: { type: 'string', default: '200' },
  application: { type: 'string', default: 'demo' },
} as const;

export const demoCommand: Command = {
  summary:
    'Run the market-monitoring fleet on the local stack with a synthetic feed and print its findings, alerts and digests',
  usage: 'demo [--duration 60] [--rate 200] [--application demo]',
  options,
  async run(args) {
    const { values } = parseArgs({ args, options });
    const duration = Number(values.duration);
    const rate = Number(values.rate);
    if (!Number.isInteger(duration) || duration < 40 || duration > 3600)
      throw usageError(`--duration takes seconds from 40 to 3600 (the scenarios need 40), got "${values.duration}"`);
    if (!Number.isInteger(rate) || rate < 10 || rate > 50_000)
      throw usageError(`--rate takes events per second from 10 to 50000, got "${values.rate}"`);
    const config = loadConfig();
    const say = (line: string): void => console.log(line);
    const ctx = createStackContext(config, projectRoot, (line) => say(`stack: ${line}`));
    const up = await stackUp(ctx);
    say(`stack: ${up.map((r) => `${r.name} ${r.action}`).join(', ')}`);

    const application = values.application;
    // Grace covers the pipeline's latency (five hops, eleven processes on a small machine): a finding that reaches
    // the digest window after its minute closed would be late and missing from that minute's digest.
    const env = { AS_FLEET_APP: application, AS_FLEET_DIGEST_SIZE: '1m', AS_FLEET_DIGEST_GRACE: '15s' };
    const topology = marketSignals({ application, digestSize: '1m', digestGrace: '15s' });
    await migrateDatabase(config, projectRoot);
    const schemas = loadSchemas(join(projectRoot, 'schemas'));
    await registerSchemas(config, registryClient(config), schemas);
    const kafka = kafkaClient(config, 'demo');
    const redis = new Redis(config.redis.url);
    const portfolios = (await import(join(projectRoot, 'topologies/portfolios.json'), { with: { type: 'json' } }))
      .default as Array<{ portfolioId: string }>;
    say(
      `portfolios: loaded ${await writeTable(redis, kafka, topology, 'portfolios', portfolios, schemas)} into shared state (topic ${topology.tableTopic('portfolios')})`,
    );
    redis.disconnect();
    if (!config.anthropic.apiKey)
      say('llm: no ANTHROPIC_API_KEY: alerts and digests are rules-only (analysis by the rules, said in each record)');

    // Topics first, from one process: members starting together would otherwise race to create them.
    const admin = kafka.admin();
    await admin.connect();
    for (const name of Object.keys(topology.processors)) await ensureTopics(admin, topology, name);
    await admin.disconnect();

    const file = join(projectRoot, 'topologies/market-signals.ts');
    const members: Member[] = Object.keys(topology.processors).map((name) => startMember(file, name, env));
    const sinkMember: Member = startSink(file, env);
    const all = [...members, sinkMember];
    try {
      await waitUntilStarted(all, 120_000);
      say(`fleet: ${members.map((m) => m.processor).join(', ')} and the ClickHouse sink are running, one process each`);
      const started = Date.now();
      const feed = await runFeed(config, {
        seed: 7,
        symbols: 12,
        rate,
        duration: `${duration}s`,
        start: Date.now(),
        newsPerMinute: 4,
        filingsPerHour: 60,
        scenarios: demoScenarios,
        ...(process.stdout.isTTY
          ? { onProgress: (p: { events: number }) => process.stdout.write(`\rfeed: ${p.events} events `) }
          : {}),
      });
      say(
        `\nfeed: ${feed.events} events in ${feed.seconds.toFixed(1)} s (${Object.entries(feed.byType)
          .map(([t, n]) => `${n} ${t}`)
          .join(', ')}); scenarios: ${demoScenarios.join(', ')}`,
      );
      // Every minute in which a portfolio had a finding gets its digest once the minute is over, plus 15 s of grace,
      // at the next wall-clock check (every 10 s): wait for all of them.
      const from = Math.floor(started / 60_000) * 60;
      const deadline = Date.now() + 120_000;
      let digests: Array<Record<string, unknown>> = [];
      let missing: string[] = [];
      // This demo's portfolios only: the database may hold other applications' findings (the smoke check's, say).
      const ids = portfolios.map((p) => `'${p.portfolioId.replace(/[\\']/g, '')}'`).join(', ');
      const ch = openClickHouse(config);
      try {
        while (Date.now() < deadline) {
          await sleep(3000);
          const minutes = await (
            await ch.query({
              query: `SELECT DISTINCT portfolio_id, toUnixTimestamp(toStartOfMinute(event_time)) AS minute FROM findings FINAL WHERE portfolio_id IN (${ids}) AND event_time >= toDateTime(${from})`,
              format: 'JSONEachRow',
            })
          ).json<{ portfolio_id: string; minute: number | string }>();
          digests = await runNamedQuery('recentDigests', { from, limit: 50 });
          const have = new Set(
            digests.map(
              (d) =>
                `${d.portfolio_id} ${Math.floor(new Date(`${String(d.hour_start).replace(' ', 'T')}Z`).getTime() / 1000)}`,
            ),
          );
          missing = minutes.map((m) => `${m.portfolio_id} ${Number(m.minute)}`).filter((k) => !have.has(k));
          if (minutes.length > 0 && missing.length === 0) break;
        }
      } finally {
        await ch.close();
      }
      if (missing.length > 0)
        say(
          `\ndigests: ${missing.length} portfolio-minutes with findings have no digest after 120 s (findings later than the 15 s grace): ${missing.join(', ')}`,
        );
      const findings = await runNamedQuery('recentFindings', { from, minSeverity: 'medium', limit: 30 });
      say(
        `\nfindings at medium or above (ClickHouse):\n${formatRows(
          findings.map(({ evidence: _e, ...r }) => r),
          'table',
        )}`,
      );
      for (const portfolio of ['growth', 'income', 'balanced']) {
        const alerts = await runNamedQuery('alertsByPortfolio', { portfolio, from, to: from + 7200, limit: 10 });
        if (alerts.length > 0)
          say(
            `\nalerts for ${portfolio}:\n${formatRows(
              alerts.map((a) => ({ symbol: a.symbol, severity: a.severity, model: a.model, analysis: a.analysis })),
              'table',
            )}`,
          );
      }
      // The same columns as `agent-streams digest`: a digest's period starts at window_start, a minute here.
      say(`\ndigests:\n${formatRows(digestRows(digests), 'table')}`);
      say('\nquery ClickHouse yourself:');
      say('  cli/agent-streams digest --since 1h');
      say('  cli/agent-streams findings --portfolio growth --min-severity high');
      say('  cli/agent-streams alerts --portfolio growth --format markdown');
      return findings.length > 0 && digests.length > 0 ? 0 : 1;
    } finally {
      await stopMembers(all);
      say('fleet: stopped (the stack keeps running: cli/agent-streams stack down stops it)');
    }
  },
};

function startSink(file: string, env: Record<string, string>): Member {
  return startMember(file, 'clickhouse-sink', env, { command: ['sink', file] });
}
