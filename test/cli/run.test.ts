/**
 * `agent-streams run` as a user starts it: a member process that serves /metrics, /healthz and /readyz, counts
 * what it processes, and on SIGTERM finishes, commits, leaves the group and exits 0.
 */
import { startMember, waitUntilStarted } from '../../cli/fleet.ts';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { AvroSerde, registryClient } from '../../runtime/serde/avro.ts';
import { loadSchemas, registerSchemas } from '../../runtime/serde/schemas.ts';
import { config, kafkaClient, uniqueName } from '../support/stack.ts';

const root = join(import.meta.dirname, '../..');

describe('agent-streams run', () => {
  it('serves metrics and health, and shuts down gracefully on SIGTERM', async () => {
    const kafka = kafkaClient();
    const application = uniqueName('cli').replaceAll('_', '-');
    const input = `${application}.input`;
    const registry = registryClient(config);
    await registerSchemas(config, registry, loadSchemas(join(root, 'test/fixtures/schemas')));
    const serde = new AvroSerde(registry);
    await serde.writerFor('agentstreams.test.Event');

    const member = startMember(join(root, 'test/fixtures/topologies/window-count.ts'), 'counter', {
      AS_FIXTURE_APP: application,
      AS_FIXTURE_INPUT: input,
      AS_METRICS_PORT: '0',
    });
    const { child, events } = member;
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const until = Date.now() + 60_000;
      await waitUntilStarted([member], 60_000);
      const port = events.find((e) => e.event === 'started')?.metricsPort as number;
      expect(port).toBeGreaterThan(0);
      const base = `http://127.0.0.1:${port}`;

      const producer = kafka.producer();
      await producer.connect();
      await producer.send({
        topic: input,
        messages: Array.from({ length: 1000 }, (_, i) => ({
          key: `k${i % 10}`,
          value: serde.encode('agentstreams.test.Event', {
            key: `k${i % 10}`,
            eventTime: 1_767_225_600_000 + i * 100,
            amount: 1,
          }),
        })),
      });
      await producer.disconnect();

      let consumed = 0;
      while (consumed < 1000 && Date.now() < until) {
        const text = await (await fetch(`${base}/metrics`)).text();
        consumed = text
          .split('\n')
          .filter((l) => l.startsWith('agent_streams_records_consumed_total{'))
          .reduce((n, l) => n + Number(l.split(' ').pop()), 0);
        await sleep(200);
      }
      expect(consumed).toBe(1000);
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      expect((await fetch(`${base}/nope`)).status).toBe(404);

      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(events.find((e) => e.event === 'stopped')).toMatchObject({ records: 1000 });
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 120_000);
});
