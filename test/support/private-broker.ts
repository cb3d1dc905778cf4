/**
 * A private Kafka broker for tests that kill it: its own data folder and ports, started with the same code as the
 * local stack, so SIGKILLing it never disturbs the shared stack other tests use. The registry, Redis and ClickHouse
 * stay the shared ones.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Kafka, logLevel } from 'kafkajs';
import { createStackContext, stackDown, stackUp } from '../../infra/local/stack.ts';
import { readPid } from '../../infra/local/process.ts';
import type { Config } from '../../runtime/config/index.ts';
import { config as shared } from './stack.ts';

const root = resolve(import.meta.dirname, '../..');

export async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => done(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

export interface PrivateBroker {
  /** The shared configuration with `kafka.brokers` pointing at this broker. */
  config: Config;
  kafka: Kafka;
  /** SIGKILLs the broker and waits until the process is gone. */
  kill(): Promise<void>;
  /** Starts it again on the same ports and data (after `kill`). */
  restart(): Promise<void>;
  /** Stops it and removes its folder. */
  remove(): Promise<void>;
}

export async function startPrivateBroker(label: string, overrides: Partial<Config['kafka']> = {}): Promise<PrivateBroker> {
  const kafkaPort = await freePort();
  const kafkaControllerPort = await freePort();
  const config: Config = {
    ...shared,
    kafka: { ...shared.kafka, brokers: [`127.0.0.1:${kafkaPort}`], ...overrides },
    stack: { ...shared.stack, dir: `.stack/${label}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`, kafkaPort, kafkaControllerPort },
  };
  const ctx = createStackContext(config, root);
  await stackUp(ctx, ['kafka']);
  const pid = (): number => readPid(join(ctx.serviceDir('kafka'), 'kafka.pid'))!;
  return {
    config,
    kafka: new Kafka({ clientId: `${label}-test`, brokers: config.kafka.brokers, logLevel: logLevel.NOTHING }),
    async kill() {
      const victim = pid();
      process.kill(victim, 'SIGKILL');
      for (;;) {
        try {
          process.kill(victim, 0);
        } catch {
          return;
        }
        await sleep(50);
      }
    },
    async restart() {
      await stackUp(ctx, ['kafka']);
    },
    async remove() {
      await stackDown(ctx, ['kafka']).catch(() => undefined);
      rmSync(ctx.stackDir, { recursive: true, force: true });
    },
  };
}
