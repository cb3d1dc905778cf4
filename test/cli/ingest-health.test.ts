/**
 * The ingest gateway's /healthz and /readyz tell the truth: a request whose produce call hangs on a broker that
 * stopped answering (a private broker frozen with SIGSTOP) makes it not live and not ready past
 * AS_LIVENESS_PRODUCER_STUCK_MS; when the broker answers again the request completes and it is healthy again.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { freePort, startPrivateBroker } from '../support/private-broker.ts';
import { uniqueName } from '../support/stack.ts';

const root = join(import.meta.dirname, '../..');
const KEY = 'ingest-health-key-0123456789';

describe('ingest gateway health', () => {
  it('is not live or ready while a produce call hangs on a frozen broker, and healthy again after', async () => {
    const broker = await startPrivateBroker('ingest-health');
    const port = await freePort();
    const topic = `${uniqueName('ingesthealth').replaceAll('_', '-')}.events`;
    // A fresh broker creates and loads its group coordinator on first use; the gateway reads a group's offsets at
    // start and takes "coordinator loading" as fatal, so the coordinator is made ready first.
    const admin = broker.kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
    for (let attempt = 0; ; attempt += 1) {
      try {
        await admin.fetchOffsets({ groupId: `${topic}.warm-up`, topics: [topic] });
        break;
      } catch (error) {
        if (attempt >= 50) throw error;
        await sleep(200);
      }
    }
    await admin.disconnect();
    const child = spawn(
      process.execPath,
      [join(root, 'cli/bin.mjs'), 'ingest', '--port', String(port), '--topic', topic, '--partitions', '1'],
      {
        cwd: root,
        env: {
          ...process.env,
          AS_KAFKA_BROKERS: broker.config.kafka.brokers.join(','),
          AS_INGEST_API_KEYS: KEY,
          AS_METRICS_PORT: '0',
          AS_LIVENESS_PRODUCER_STUCK_MS: '1500',
        },
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const events: Array<Record<string, unknown>> = [];
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        events.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not a log line
      }
    });
    let frozen = false;
    try {
      const deadline = Date.now() + 60_000;
      while (!events.some((e) => e.event === 'listening')) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error('the gateway did not start');
        await sleep(50);
      }
      const metricsPort = events.find((e) => e.event === 'listening')!.metricsPort as number;
      const probe = async (path: string): Promise<{ status: number; body: string }> => {
        const response = await fetch(`http://127.0.0.1:${metricsPort}${path}`);
        return { status: response.status, body: await response.text() };
      };
      const post = (id: string): Promise<Response> =>
        fetch(`http://127.0.0.1:${port}/v1/events/Trade`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
          body: JSON.stringify({
            symbol: 'ACME',
            eventTime: 1_767_225_600_000,
            price: 10.5,
            quantity: 100,
            side: 'BUY',
            tradeId: id,
          }),
        });
      expect((await post('before')).status).toBe(202);
      expect((await probe('/healthz')).status).toBe(200);
      expect((await probe('/readyz')).status).toBe(200);

      broker.freeze();
      frozen = true;
      const hanging = post('during');
      // Awaited below; when the test fails first and the gateway is killed, its rejection is expected.
      hanging.catch(() => undefined);
      const until = Date.now() + 30_000;
      let health = await probe('/healthz');
      while (health.status === 200 && Date.now() < until) {
        await sleep(100);
        health = await probe('/healthz');
      }
      expect(health.status).toBe(503);
      expect(health.body).toMatch(/a produce call has not returned for \d+ s \(bound 1\.5 s\)/);
      expect((await probe('/readyz')).status).toBe(503);

      broker.thaw();
      frozen = false;
      expect((await hanging).status).toBe(202);
      expect((await probe('/healthz')).status).toBe(200);
      expect((await probe('/readyz')).status).toBe(200);

      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      if (frozen) broker.thaw();
      if (child.exitCode === null) child.kill('SIGKILL');
      await broker.remove();
    }
  }, 150_000);
});
