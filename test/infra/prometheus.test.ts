/**
 * A real Prometheus (Debian's) scrapes a running fleet: two `run` members of one consumer group, the ClickHouse
 * `sink` and the `ingest` gateway, each on its own /metrics port, found through a file_sd target file, with the alert rules of
 * infra/prometheus/rules.yml loaded. One member is frozen (SIGSTOP) while input keeps arriving: the other member
 * reports the whole group's lag from the broker, so the lag rises in Prometheus and AgentStreamsConsumerLagGrowing
 * fires (as does AgentStreamsMemberNotReady for the frozen one). The rules are the real ones with only their `for:`
 * and range durations shortened. Every PromQL expression of the Grafana dashboard is run against this Prometheus.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { startMember, stopMembers, type Member } from '../../cli/fleet.ts';
import { ensureTools, hostTools } from '../../infra/local/tools.ts';
import { AvroSerde, registryClient } from '../../runtime/serde/avro.ts';
import { loadSchemas, registerSchemas } from '../../runtime/serde/schemas.ts';
import { concrete, DASHBOARD_FILE, dashboardQueries, RULES_FILE } from '../support/dashboard.ts';
import { config, kafkaClient, uniqueName } from '../support/stack.ts';

const root = join(import.meta.dirname, '../..');
const TOPOLOGY = join(root, 'test/fixtures/topologies/window-count.ts');
const SINK_TOPOLOGY = join(root, 'test/fixtures/topologies/sink-only.ts');

/** The real rules with time shortened for a test: `for:` to 5 s, hour ranges to 5 min, others to 20 s. Nothing else changes. */
export function rulesForTest(text: string): string {
  return text
    .replaceAll(/\bfor: \d+[smh]\b/g, 'for: 5s')
    .replaceAll(/\[\d+h\]/g, '[5m]')
    .replaceAll(/\[\d+[sm]\]/g, '[20s]');
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Polls `probe` until it gives a value; `fatal` is checked first on every round and ends the wait at once. */
async function until<T>(
  what: string,
  timeoutMs: number,
  probe: () => Promise<T | undefined>,
  fatal: () => void = () => {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    fatal();
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline)
      throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (last error: ${String(last)})` : ''}`);
    await sleep(250);
  }
}

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

describe('a real Prometheus scraping a running fleet', () => {
  const application = uniqueName('prom').replaceAll('_', '-');
  const input = `${application}.input`;
  const dir = mkdtempSync(join(tmpdir(), 'prometheus-test-'));
  const members: Member[] = [];
  let prometheus: ChildProcess | undefined;
  let prometheusExit: Promise<unknown> | undefined;
  let base = '';
  let producing = false;
  let producerLoop: Promise<void> | undefined;

  async function api<T>(path: string): Promise<T> {
    const response = await fetch(`${base}${path}`);
    const body = (await response.json()) as { status: string; data: T; error?: string };
    if (body.status !== 'success') throw new Error(`${path}: ${body.error ?? body.status}`);
    return body.data;
  }
  const query = (expr: string): Promise<Sample[]> =>
    api<{ result: Sample[] }>(`/api/v1/query?query=${encodeURIComponent(expr)}`).then((d) => d.result);

  beforeAll(async () => {
    ensureTools([hostTools.prometheus], (line) => console.log(line));
    const registry = registryClient(config);
    await registerSchemas(config, registry, loadSchemas(join(root, 'test/fixtures/schemas')));
  }, 300_000);

  afterAll(async () => {
    producing = false;
    await producerLoop?.catch(() => undefined);
    for (const { child } of members)
      if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGCONT');
    await stopMembers(members, 20_000);
    if (prometheus?.pid !== undefined && prometheus.exitCode === null) {
      process.kill(prometheus.pid, 'SIGTERM');
      const timer = setTimeout(() => prometheus?.exitCode === null && process.kill(prometheus.pid!, 'SIGKILL'), 10_000);
      await prometheusExit;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('scrapes run, sink and ingest, shows lag rising while a member is frozen, fires the lag alert, and answers every dashboard query', async () => {
    // The fleet: two members of one group (a long session timeout keeps the frozen one's partitions assigned to it)
    // and the ingest gateway. Each gets a free metrics port from the launcher and logs it.
    const admin = kafkaClient().admin();
    await admin.connect();
    await admin.createTopics({
      topics: [{ topic: `${application}-sink.findings`, numPartitions: 1 }],
      waitForLeaders: true,
    });
    await admin.disconnect();
    const memberEnv = {
      AS_FIXTURE_APP: application,
      AS_FIXTURE_INPUT: input,
      AS_CONSUMER_SESSION_TIMEOUT_MS: '60000',
      AS_METRICS_LAG_INTERVAL_MS: '1000',
    };
    members.push(startMember(TOPOLOGY, 'counter', memberEnv), startMember(TOPOLOGY, 'counter', memberEnv));
    const apiKey = 'prometheus-test-key-0123456789';
    members.push(
      startMember(
        TOPOLOGY,
        'ingest',
        { AS_INGEST_API_KEYS: apiKey },
        { command: ['ingest', '--port', '0', '--topic', `${application}.ingest`, '--partitions', '1'] },
      ),
      startMember(
        SINK_TOPOLOGY,
        'sink',
        { AS_FIXTURE_APP: `${application}-sink` },
        { command: ['sink', SINK_TOPOLOGY] },
      ),
    );
    const ports = await until(
      'every process serving /metrics',
      90_000,
      async () => {
        const found = members.map(
          (m) =>
            m.events.find((e) => e.event === 'started' || e.event === 'listening')?.metricsPort as number | undefined,
        );
        return found.every((p) => typeof p === 'number' && p > 0) ? (found as number[]) : undefined;
      },
      () => {
        for (const m of members)
          if (m.child.exitCode !== null) throw new Error(`${m.processor} exited with ${m.child.exitCode}`);
      },
    );
    const [portA, portB, portIngest, portSink] = ports as [number, number, number, number];

    // Prometheus: the shipped configuration and rules, with short intervals, a target file, and a temp data dir.
    const promConfig = parseYaml(readFileSync(join(root, 'infra/prometheus/prometheus.yml'), 'utf8')) as {
      global: Record<string, string>;
      rule_files: string[];
      scrape_configs: Array<{
        job_name: string;
        file_sd_configs: Array<{ files: string[]; refresh_interval: string }>;
      }>;
    };
    promConfig.global = { scrape_interval: '1s', scrape_timeout: '900ms', evaluation_interval: '1s' };
    writeFileSync(join(dir, 'rules.yml'), rulesForTest(readFileSync(RULES_FILE, 'utf8')));
    promConfig.rule_files = [join(dir, 'rules.yml')];
    const job = promConfig.scrape_configs.find((c) => c.job_name === 'agent-streams')!;
    job.file_sd_configs = [{ files: [join(dir, 'targets.json')], refresh_interval: '1s' }];
    const target = (port: number, labels: Record<string, string>) => ({ targets: [`127.0.0.1:${port}`], labels });
    writeFileSync(
      join(dir, 'targets.json'),
      JSON.stringify([
        target(portA, { member: 'a' }),
        target(portB, { member: 'b' }),
        target(portIngest, { member: 'ingest' }),
        target(portSink, { member: 'sink' }),
      ]),
    );
    writeFileSync(join(dir, 'prometheus.yml'), stringifyYaml(promConfig));
    const promPort = await freePort();
    base = `http://127.0.0.1:${promPort}`;
    prometheus = spawn(
      'prometheus',
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${promPort}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    prometheusExit = new Promise((resolve) => prometheus!.once('exit', resolve));
    await until('Prometheus ready', 30_000, async () => ((await fetch(`${base}/-/ready`)).ok ? true : undefined));
    await until('all four targets up', 30_000, async () => {
      const { activeTargets } = await api<{ activeTargets: Array<{ health: string }> }>('/api/v1/targets');
      return activeTargets.length === 4 && activeTargets.every((t) => t.health === 'up') ? true : undefined;
    });
    const rules = await api<{ groups: Array<{ rules: Array<{ name: string }> }> }>('/api/v1/rules');
    expect(rules.groups.flatMap((g) => g.rules.map((r) => r.name))).toEqual(
      expect.arrayContaining(['AgentStreamsConsumerLagGrowing', 'AgentStreamsMemberNotReady']),
    );

    // Input keeps arriving for the rest of the test, about 125 records a second over the 6 partitions.
    const registry = registryClient(config);
    const serde = new AvroSerde(registry);
    await serde.writerFor('agentstreams.test.Event');
    const producer = kafkaClient().producer({ idempotent: true });
    await producer.connect();
    producing = true;
    let sent = 0;
    producerLoop = (async () => {
      while (producing) {
        const messages = Array.from({ length: 25 }, (_, i) => {
          const key = `k${(sent + i) % 48}`;
          return { key, value: serde.encode('agentstreams.test.Event', { key, eventTime: Date.now(), amount: 1 }) };
        });
        await producer.send({ topic: input, acks: -1, messages });
        sent += messages.length;
        await sleep(200);
      }
      await producer.disconnect();
    })();

    // The ingest gateway counts what it answers by status.
    expect(
      (
        await fetch(`${members[2]!.events.find((e) => e.event === 'listening')!.url as string}/v1/events/Trade`, {
          method: 'POST',
          body: '[]',
        })
      ).status,
    ).toBe(401);
    await until('ingest requests by status in Prometheus', 20_000, async () => {
      const [sample] = await query('agent_streams_ingest_requests_total{status="401"}');
      return sample && Number(sample.value[1]) >= 1 ? true : undefined;
    });

    // The sink serves its buffer gauge and says it is ready.
    await until('the sink ready, with its buffer gauge, in Prometheus', 20_000, async () => {
      const [ready] = await query(`agent_streams_member_ready{application="${application}-sink"}`);
      const [buffered] = await query(`agent_streams_sink_buffered_rows{application="${application}-sink"}`);
      return ready && Number(ready.value[1]) === 1 && buffered ? true : undefined;
    });

    const sel = `{application="${application}"}`;
    await until('both members ready and processing, in Prometheus', 60_000, async () => {
      const [ready] = await query(`sum(agent_streams_member_ready${sel})`);
      const [rate] = await query(`sum(rate(agent_streams_records_consumed_total${sel}[5s]))`);
      return ready && Number(ready.value[1]) === 2 && rate && Number(rate.value[1]) > 0 ? true : undefined;
    });
    const lagExpr = `agent_streams:processor_lag_records:sum${sel}`;
    const lagNow = async (): Promise<number> => Number((await query(lagExpr))[0]?.value[1] ?? NaN);
    const before = await lagNow();

    // Freeze member b: its partitions stay assigned to it (session timeout 60 s) and nothing on them is processed.
    const frozenAt = Date.now();
    process.kill(members[1]!.child.pid!, 'SIGSTOP');
    const readings: number[] = [];
    type Alert = { labels: Record<string, string>; state: string };
    let lagFiring: Alert | undefined;
    let firedAfterMs = 0;
    let notReadyFiring: Alert | undefined;
    // Both alerts are looked for on every round: the frozen member cannot be scraped, so it is not ready either.
    const firing = await until(
      'AgentStreamsConsumerLagGrowing and AgentStreamsMemberNotReady firing',
      90_000,
      async () => {
        readings.push(await lagNow());
        const { alerts } = await api<{ alerts: Alert[] }>('/api/v1/alerts');
        if (!lagFiring) {
          lagFiring = alerts.find(
            (a) =>
              a.labels.alertname === 'AgentStreamsConsumerLagGrowing' &&
              a.labels.application === application &&
              a.state === 'firing',
          );
          if (lagFiring) firedAfterMs = Date.now() - frozenAt;
        }
        notReadyFiring ??= alerts.find(
          (a) => a.labels.alertname === 'AgentStreamsMemberNotReady' && a.labels.member === 'b' && a.state === 'firing',
        );
        return lagFiring && notReadyFiring ? lagFiring : undefined;
      },
    );
    expect(firing.labels).toMatchObject({ processor: 'counter', severity: 'warning' });
    const valid = readings.filter(Number.isFinite);
    expect(valid.at(-1)!).toBeGreaterThan(100);
    expect(valid.at(-1)!).toBeGreaterThan(before);
    // Only the frozen member is not ready.
    const { alerts } = await api<{ alerts: Alert[] }>('/api/v1/alerts');
    expect(
      alerts
        .filter((a) => a.labels.alertname === 'AgentStreamsMemberNotReady' && a.state === 'firing')
        .map((a) => a.labels.member),
    ).toEqual(['b']);
    console.log(
      `prometheus test: lag ${before} before the freeze, ${valid.at(-1)} when the lag alert fired ${firedAfterMs} ms after it; ${sent} records sent`,
    );

    // Every dashboard query runs on this Prometheus; the ones about what this fleet does return data.
    const dashboard = JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8')) as unknown;
    const results = new Map<string, Sample[]>();
    for (const q of dashboardQueries(dashboard)) results.set(`${q.panel}/${q.refId}`, await query(concrete(q.expr)));
    for (const key of [
      'Throughput: records in and out/A',
      'Consumer lag per processor/A',
      'Ready members per processor/A',
      'Ingest requests by status/A',
      'Transactions committed and aborted/A',
    ]) {
      expect(results.get(key)?.length ?? 0, key).toBeGreaterThan(0);
    }
  }, 240_000);
});
