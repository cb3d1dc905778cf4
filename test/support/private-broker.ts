/**
 * A private Kafka broker, or a private cluster of them, for tests that kill it: its own data folder and ports,
 * started with the same code as the local stack (`stack up [--brokers N]`), so SIGKILLing it never disturbs the
 * shared stack other tests use. The registry, Redis and ClickHouse stay the shared ones.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { logLevel } from 'kafkajs';
import type { KafkaPort } from '../../runtime/kafka/port.ts';
import { kafkaClient } from '../../runtime/kafka/client.ts';
import { createStackContext, servicePids, stackDown, stackUp } from '../../infra/local/stack.ts';
import { portInUse, readPid } from '../../infra/local/process.ts';
import { kafkaBootstrap, kafkaNodePorts } from '../../infra/local/services/kafka.ts';
import { secureClientSettings } from '../../infra/local/services/kafka-security.ts';
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
  kafka: KafkaPort;
  /** SIGKILLs the broker and waits until the process is gone. */
  kill(): Promise<void>;
  /** SIGSTOPs the broker: connections stay open and nothing answers (a hung broker, not a dead one). */
  freeze(): void;
  /** SIGCONTs it after `freeze`. */
  thaw(): void;
  /** Starts it again on the same ports and data (after `kill`). */
  restart(): Promise<void>;
  /** Stops it and removes its folder. */
  remove(): Promise<void>;
}

export interface PrivateBrokerOptions {
  /**
   * Start it as `stack up --secure` does (a SASL_SSL listener with the stack's CA, client certificate and SCRAM
   * user) and point `config.kafka` at that listener, SCRAM-SHA-512 unless `overrides` say otherwise.
   * `plaintextConfig` still reaches the plaintext listener.
   */
  secure?: boolean;
}

export async function startPrivateBroker(
  label: string,
  overrides: Partial<Config['kafka']> = {},
  options: PrivateBrokerOptions = {},
): Promise<PrivateBroker & { plaintextConfig: Config }> {
  const kafkaPort = await freePort();
  const kafkaControllerPort = await freePort();
  const kafkaSecurePort = await freePort();
  const plaintextConfig: Config = {
    ...shared,
    kafka: { ...shared.kafka, brokers: [`127.0.0.1:${kafkaPort}`], ...overrides },
    stack: {
      ...shared.stack,
      dir: `.stack/${label}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`,
      kafkaPort,
      kafkaControllerPort,
      kafkaSecurePort,
    },
  };
  const ctx = createStackContext(plaintextConfig, root, () => {}, options.secure ? { kafkaSecure: true } : {});
  await stackUp(ctx, ['kafka']);
  const config: Config = options.secure
    ? {
        ...plaintextConfig,
        kafka: {
          ...plaintextConfig.kafka,
          ...secureClientSettings(ctx.serviceDir('kafka'), [`127.0.0.1:${kafkaSecurePort}`]),
          ...overrides,
        },
      }
    : plaintextConfig;
  const pid = (): number => readPid(join(ctx.serviceDir('kafka'), 'kafka.pid'))!;
  return {
    config,
    plaintextConfig,
    kafka: kafkaClient(config, `${label}-test`, { logLevel: logLevel.NOTHING }),
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
    freeze() {
      process.kill(pid(), 'SIGSTOP');
    },
    thaw() {
      process.kill(pid(), 'SIGCONT');
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

export interface PrivateCluster {
  /** The shared configuration with `kafka.brokers` listing every node. */
  config: Config;
  kafka: KafkaPort;
  /** Node i's pid (undefined while it is down). */
  pids(): Array<number | undefined>;
  /** Node i's Kafka node id (its `node.id`, as metadata names leaders). */
  nodeId(i: number): number;
  /** The node index whose Kafka node id is `nodeId`. */
  nodeIndex(nodeId: number): number;
  /** SIGKILLs node i and waits until the process is gone. */
  killNode(i: number): Promise<void>;
  /** Starts the nodes that are down again on their ports and data; resolves once every node has registered. */
  restartNode(i: number): Promise<void>;
  /** Stops every node and removes the cluster's folder. */
  remove(): Promise<void>;
  /** Seconds `stack up --brokers N` took, formatting included. */
  startupSeconds: number;
}

async function sigkill(pid: number): Promise<void> {
  process.kill(pid, 'SIGKILL');
  for (;;) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await sleep(50);
  }
}

/** A base port whose derived node ports (client and controller of each node) are all free. */
async function freeClusterPorts(brokers: number): Promise<{ kafkaPort: number; kafkaControllerPort: number }> {
  for (;;) {
    const kafkaPort = 20_000 + 2 * Math.floor(Math.random() * 10_000);
    const stack = { ...shared.stack, kafkaPort, kafkaControllerPort: kafkaPort + 1 };
    const ports = Array.from({ length: brokers }, (_, i) => Object.values(kafkaNodePorts(stack, i))).flat();
    if ((await Promise.all(ports.map((port) => portInUse(port)))).every((taken) => !taken))
      return { kafkaPort, kafkaControllerPort: kafkaPort + 1 };
  }
}

/** `brokers` combined broker+controller nodes with internal topics replicated to 3 (min ISR 2). */
export async function startPrivateCluster(
  label: string,
  brokers = 3,
  overrides: Partial<Config['kafka']> = {},
): Promise<PrivateCluster> {
  const ports = await freeClusterPorts(brokers);
  const stack = {
    ...shared.stack,
    dir: `.stack/${label}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`,
    ...ports,
  };
  const config: Config = {
    ...shared,
    kafka: { ...shared.kafka, brokers: kafkaBootstrap(stack, brokers), ...overrides },
    stack,
  };
  const ctx = createStackContext(config, root, () => {}, { kafkaBrokers: brokers });
  const started = Date.now();
  try {
    await stackUp(ctx, ['kafka']);
  } catch (error) {
    await stackDown(ctx, ['kafka']).catch(() => undefined);
    rmSync(ctx.stackDir, { recursive: true, force: true });
    throw error;
  }
  const startupSeconds = (Date.now() - started) / 1000;
  const pids = (): Array<number | undefined> => servicePids(ctx, 'kafka');
  return {
    config,
    kafka: kafkaClient(config, `${label}-test`, { logLevel: logLevel.NOTHING }),
    pids,
    nodeId: (i) => i + 1,
    nodeIndex: (nodeId) => nodeId - 1,
    startupSeconds,
    async killNode(i) {
      const victim = pids()[i];
      if (victim === undefined) throw new Error(`node ${i} of ${label} is not running`);
      await sigkill(victim);
    },
    async restartNode(i) {
      if (pids()[i] !== undefined) return;
      await stackUp(ctx, ['kafka']);
    },
    async remove() {
      await stackDown(ctx, ['kafka']).catch(() => undefined);
      rmSync(ctx.stackDir, { recursive: true, force: true });
    },
  };
}
