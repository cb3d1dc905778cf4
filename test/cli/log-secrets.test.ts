/**
 * Secrets never reach a log line. Real processes — a member (`run`), the ClickHouse `sink`, the `ingest` gateway,
 * and a sink that fails on a wrong ClickHouse password — start with distinctive secrets in their configuration,
 * work (or fail) against the local stack, and every line they write on stdout and stderr is searched for them.
 *
 * The secrets are ones the local services accept or ignore: the SASL password with no SASL mechanism, registry
 * basic auth (the local registry has no auth), a Redis URL with the password of an ACL user made for this test,
 * an Anthropic key a rules-only member never sends, the ingest API keys, and the ClickHouse password in the failing
 * sink only. Every line on stdout must also be the logger's JSON.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { AvroSerde, registryClient } from '../../runtime/serde/avro.ts';
import { loadSchemas, registerSchemas } from '../../runtime/serde/schemas.ts';
import { ensureTopics } from '../../runtime/engine/topics.ts';
import { marketSignals } from '../../topologies/market-signals.ts';
import { AlertType, type Alert } from '../../schemas/generated/types.ts';
import { config, kafkaClient, redisUserUrl, uniqueName } from '../support/stack.ts';
import { freePort } from '../support/private-broker.ts';

const root = join(import.meta.dirname, '../..');

const secret = {
  sasl: 'sasl-Secret-4Kq9Wm2Xr7',
  registry: 'registry-Secret-8Hn3Bv6Lp1',
  redis: 'redis-Secret-5Tz2Qw9Ej4',
  anthropic: 'sk-ant-Secret-7Yc4Ud1Fo8',
  clickhouse: 'clickhouse-Secret-3Gs8Ka5Ni2',
  ingestA: 'ingest-Secret-6Rb1Mx7Vh3Zk',
  ingestB: 'ingest-Secret-2Pd9Wl4Cs8Jq',
};

const secretEnv = {
  AS_KAFKA_SASL_PASSWORD: secret.sasl,
  AS_REGISTRY_USERNAME: 'fleet',
  AS_REGISTRY_PASSWORD: secret.registry,
  AS_REDIS_URL: `redis://log-secrets:${secret.redis}@127.0.0.1:${config.stack.redisPort}`,
  ANTHROPIC_API_KEY: secret.anthropic,
  AS_METRICS_PORT: '0',
};

interface Started {
  lines: () => string[];
  events: () => Array<Record<string, unknown>>;
  exited: Promise<number | null>;
  pid: number;
}

/** Starts `agent-streams <args>` and keeps every line of its stdout and stderr. */
function start(args: string[], env: Record<string, string>): Started {
  const child = spawn(process.execPath, [join(root, 'cli/bin.mjs'), ...args], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out: string[] = [];
  const err: string[] = [];
  child.stdout!.on('data', (chunk: Buffer) => out.push(chunk.toString('utf8')));
  child.stderr!.on('data', (chunk: Buffer) => err.push(chunk.toString('utf8')));
  const split = (parts: string[]): string[] =>
    parts
      .join('')
      .split('\n')
      .filter((l) => l.trim() !== '');
  return {
    pid: child.pid!,
    exited: new Promise((resolve) => child.once('exit', (code) => resolve(code))),
    lines: () => [...split(out), ...split(err)],
    events: () =>
      split(out).map((line) => {
        try {
          return JSON.parse(line) as Record<string, unknown>;
        } catch {
          throw new Error(`stdout line is not JSON: ${line}`);
        }
      }),
  };
}

async function until(what: string, check: () => boolean, p: Started, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}; its last lines:\n${p.lines().slice(-10).join('\n')}`);
    await sleep(50);
  }
}

function expectNoSecrets(name: string, lines: string[]): void {
  for (const value of Object.values(secret)) {
    const leaks = lines.filter((line) => line.includes(value));
    expect(leaks, `${name} logged ${value}`).toEqual([]);
  }
}

describe('secrets in the logs of real processes', () => {
  beforeAll(async () => {
    await redisUserUrl('log-secrets', secret.redis);
  });

  it('a member, the sink and the ingest gateway with secrets configured never log them', async () => {
    const application = uniqueName('logsecrets').replaceAll('_', '-');
    const input = `${application}.input`;
    const registry = registryClient(config);
    await registerSchemas(config, registry, loadSchemas(join(root, 'test/fixtures/schemas')));
    const serde = new AvroSerde(registry);
    await serde.writerFor('agentstreams.test.Event');
    // The sink reads the fleet's topics: they exist before it starts, as in a deployment.
    const admin = kafkaClient().admin();
    await admin.connect();
    const fleet = marketSignals({ application });
    for (const name of Object.keys(fleet.processors)) await ensureTopics(admin, fleet, name);
    await admin.disconnect();
    const ingestPort = await freePort();
    const started: Started[] = [];
    try {
      const member = start(['run', 'test/fixtures/topologies/window-count.ts', '--processor', 'counter'], {
        ...secretEnv,
        AS_FIXTURE_APP: application,
        AS_FIXTURE_INPUT: input,
      });
      // Its own database: the test's alert row stays out of the shared one.
      const sink = start(['sink', 'topologies/market-signals.ts'], {
        ...secretEnv,
        AS_FLEET_APP: application,
        AS_CLICKHOUSE_DATABASE: application.replaceAll('-', '_'),
      });
      const ingest = start(
        ['ingest', '--port', String(ingestPort), '--topic', `${application}.events`, '--partitions', '2'],
        { ...secretEnv, AS_INGEST_API_KEYS: `${secret.ingestA},${secret.ingestB}` },
      );
      // The ClickHouse password is wrong for the local ClickHouse: this sink fails at start, and says why.
      const failing = start(['sink', 'topologies/market-signals.ts'], {
        ...secretEnv,
        AS_FLEET_APP: application,
        AS_CLICKHOUSE_PASSWORD: secret.clickhouse,
      });
      started.push(member, sink, ingest, failing);

      await until('the member to start', () => member.events().some((e) => e.event === 'started'), member);
      const producer = kafkaClient().producer();
      await producer.connect();
      await producer.send({
        topic: input,
        messages: Array.from({ length: 200 }, (_, i) => ({
          key: `k${i % 5}`,
          value: serde.encode('agentstreams.test.Event', {
            key: `k${i % 5}`,
            eventTime: 1_767_225_600_000 + i * 100,
            amount: 1,
          }),
        })),
      });
      await producer.disconnect();

      await until('the sink to start', () => sink.events().some((e) => e.event === 'started'), sink);
      // An alert reaches the sink: its line names the alert, its findings and where it was read.
      const fleetSerde = new AvroSerde(registry);
      await registerSchemas(config, registry, loadSchemas(join(root, 'schemas')));
      await fleetSerde.writerFor(AlertType);
      const alert: Alert = {
        alertId: 'a'.repeat(64),
        findingIds: ['finding-logsecrets-1'],
        portfolioId: 'p1',
        symbol: 'ACME',
        severity: 'high',
        windowStart: 1_767_225_600_000,
        eventTime: 1_767_225_659_000,
        analysis: 'rules-only',
        recommendedAction: 'review',
        model: 'rules-only',
        reason: 'no API key',
        modelDisagreed: false,
        rulesAnalysis: 'rules-only',
      };
      const alertProducer = kafkaClient().producer();
      await alertProducer.connect();
      await alertProducer.send({
        topic: `${application}.alerts`,
        messages: [{ key: 'ACME', value: fleetSerde.encode(AlertType, alert) }],
      });
      await alertProducer.disconnect();
      await until('the sink to log the alert', () => sink.events().some((e) => e.event === 'alert.sunk'), sink);
      expect(sink.events().find((e) => e.event === 'alert.sunk')).toMatchObject({
        level: 'info',
        alertId: alert.alertId,
        findingIds: alert.findingIds,
        topic: `${application}.alerts`,
        partition: expect.any(Number),
        offset: '0',
      });
      await until('the gateway to listen', () => ingest.events().some((e) => e.event === 'listening'), ingest);
      const post = (key: string): Promise<Response> =>
        fetch(`http://127.0.0.1:${ingestPort}/v1/events/Trade`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
          body: JSON.stringify({
            symbol: 'ACME',
            eventTime: 1_767_225_600_000,
            price: 10.5,
            quantity: 100,
            side: 'BUY',
            tradeId: 't1',
          }),
        });
      expect((await post(secret.ingestA)).status).toBe(202);
      expect((await post(`${secret.ingestB}-wrong`)).status).toBe(401);

      expect(await failing.exited).not.toBe(0);
      expect(failing.lines().join('\n')).toMatch(/password|Authentication|AS_CLICKHOUSE/i);

      // The member processes the records (its `stopped` line counts them), and every process stops cleanly.
      const metricsPort = member.events().find((e) => e.event === 'started')!.metricsPort as number;
      const deadline = Date.now() + 60_000;
      for (let consumed = 0; consumed < 200; await sleep(100)) {
        if (Date.now() > deadline) throw new Error(`the member consumed ${consumed} of 200 records`);
        const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
        consumed = text
          .split('\n')
          .filter((l) => l.startsWith('agent_streams_records_consumed_total{'))
          .reduce((n, l) => n + Number(l.split(' ').pop()), 0);
      }
      for (const p of [member, sink, ingest]) process.kill(p.pid, 'SIGTERM');
      expect(await member.exited).toBe(0);
      expect(await sink.exited).toBe(0);
      expect(await ingest.exited).toBe(0);
      expect(member.events().find((e) => e.event === 'stopped')).toMatchObject({ records: 200 });

      for (const [name, p] of [
        ['member', member],
        ['sink', sink],
        ['ingest', ingest],
        ['failing sink', failing],
      ] as const) {
        const lines = p.lines();
        expect(lines.length, name).toBeGreaterThan(2);
        expectNoSecrets(name, lines);
      }
      // The JSON lines have the shape the platform indexes.
      for (const p of [member, sink, ingest]) {
        for (const event of p.events())
          expect(Object.keys(event)).toEqual(
            expect.arrayContaining(['level', 'time', 'application', 'processor', 'instance', 'event']),
          );
      }
      // The configuration is logged at start, with its secrets masked.
      const startup = member.events().find((e) => e.event === 'starting') as {
        config: { kafka: { saslPassword: string }; redis: { url: string } };
      };
      expect(startup.config.kafka.saslPassword).toBe('***');
      expect(startup.config.redis.url).toMatch(/^redis:\/\/(:)?\*\*\*@127\.0\.0\.1/);
    } finally {
      for (const p of started) {
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
  }, 180_000);
});
