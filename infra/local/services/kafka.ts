/**
 * Apache Kafka 4.x in KRaft mode, from jars that Maven fetches from Maven Central into the project's cache. By
 * default one JVM that is both broker and controller; with `kafkaBrokers` > 1 (`stack up --brokers 3`) a cluster
 * of such combined nodes, each in its own folder `kafka/node-<i>` with its own ports, voting in one static
 * controller quorum, and internal topics replicated to 3 with min ISR 2. Topics are never auto-created.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { logLevel } from 'kafkajs';
import type { Config } from '../../../runtime/config/index.ts';
import { kafkaClient } from '../../../runtime/kafka/client.ts';
import { AgentStreamsError, ErrorCode } from '../../../runtime/errors.ts';
import { mavenRun } from '../maven.ts';
import { renderTemplate } from '../templates.ts';
import { hostTools } from '../tools.ts';
import type { LocalService, ServiceInstance, StackContext } from '../service.ts';
import {
  ensureKafkaSecurity,
  recordedKafkaSecure,
  scramFormatArgs,
  secureListenerName,
  secureListenerProperties,
  writeClientEnv,
} from './kafka-security.ts';

const libDir = (ctx: StackContext): string => join(ctx.cacheDir, 'kafka', 'lib');
const templates = (ctx: StackContext): string => join(ctx.root, 'infra/local/kafka');

export const maxKafkaBrokers = 9;

/**
 * Node i of a cluster listens on the configured client and controller ports shifted by 2·i: node 0 keeps the
 * single-broker ports, and the default pair (19092, 19093) interleaves (19094/19095, 19096/19097) instead of
 * colliding as a shift by i would.
 */
export function kafkaNodePorts(stack: Config['stack'], node: number): { client: number; controller: number } {
  return { client: stack.kafkaPort + 2 * node, controller: stack.kafkaControllerPort + 2 * node };
}

/** Node i's SASL_SSL port (`stack up --secure`), shifted like the others. */
export function kafkaNodeSecurePort(stack: Config['stack'], node: number): number {
  return stack.kafkaSecurePort + 2 * node;
}

/** The SASL_SSL bootstrap list of a secure stack of `brokers` nodes. */
export function kafkaSecureBootstrap(stack: Config['stack'], brokers: number): string[] {
  return Array.from({ length: brokers }, (_, i) => `127.0.0.1:${kafkaNodeSecurePort(stack, i)}`);
}

/** The bootstrap list of a stack of `brokers` nodes. */
export function kafkaBootstrap(stack: Config['stack'], brokers: number): string[] {
  return Array.from({ length: brokers }, (_, i) => `127.0.0.1:${kafkaNodePorts(stack, i).client}`);
}

/** The folder of node i (the service folder itself on a single broker, as it always was). */
export function kafkaNodeDir(ctx: StackContext, node: number): string {
  return ctx.kafkaBrokers === 1 ? ctx.serviceDir('kafka') : join(ctx.serviceDir('kafka'), `node-${node}`);
}

/** What a cluster's folder records about itself: its size (so `down` and `status` need no flag) and id. */
interface ClusterRecord {
  brokers: number;
  clusterId: string;
}

const clusterFile = (kafkaDir: string): string => join(kafkaDir, 'cluster.json');

/** The broker count recorded in a stack's Kafka folder: a cluster records it; a single broker records nothing. */
export function recordedKafkaBrokers(kafkaDir: string): number | undefined {
  if (!existsSync(clusterFile(kafkaDir))) return undefined;
  return (JSON.parse(readFileSync(clusterFile(kafkaDir), 'utf8')) as ClusterRecord).brokers;
}

function jvmArgs(ctx: StackContext, dir: string): string[] {
  return [
    '-Xms128m',
    '-Xmx512m',
    '-XX:+UseSerialGC',
    '-XX:TieredStopAtLevel=1',
    '-Djava.awt.headless=true',
    `-Dkafka.logs.dir=${join(dir, 'logs')}`,
    `-Dlog4j2.configurationFile=${join(templates(ctx), 'log4j2.yaml')}`,
    '-cp',
    `${libDir(ctx)}/*`,
  ];
}

/** A Kafka cluster id: 16 random bytes, URL-safe base64 without padding, not starting with '-'. */
function clusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

function nodes(ctx: StackContext): number[] {
  return Array.from({ length: ctx.kafkaBrokers }, (_, i) => i);
}

function instance(ctx: StackContext, node: number): ServiceInstance {
  const dir = kafkaNodeDir(ctx, node);
  const { client, controller } = kafkaNodePorts(ctx.config.stack, node);
  return {
    label: ctx.kafkaBrokers === 1 ? 'kafka' : `kafka node ${node}`,
    dir,
    ports: [
      { port: client, env: 'AS_STACK_KAFKA_PORT' },
      { port: controller, env: 'AS_STACK_KAFKA_CONTROLLER_PORT' },
      ...(ctx.kafkaSecure
        ? [{ port: kafkaNodeSecurePort(ctx.config.stack, node), env: 'AS_STACK_KAFKA_SECURE_PORT' }]
        : []),
    ],
    launch: { command: 'java', args: [...jvmArgs(ctx, dir), 'kafka.Kafka', join(dir, 'server.properties')], cwd: dir },
  };
}

export const kafkaService: LocalService = {
  name: 'kafka',
  tools: [hostTools.java, hostTools.mvn],
  ports: (ctx) => nodes(ctx).flatMap((node) => instance(ctx, node).ports),
  instances: (ctx) => nodes(ctx).map((node) => instance(ctx, node)),
  checkLayout(ctx) {
    const dir = ctx.serviceDir('kafka');
    const recorded = recordedKafkaBrokers(dir) ?? (existsSync(join(dir, 'data', 'meta.properties')) ? 1 : undefined);
    if (!Number.isInteger(ctx.kafkaBrokers) || ctx.kafkaBrokers < 1 || ctx.kafkaBrokers > maxKafkaBrokers) {
      throw new AgentStreamsError(
        ErrorCode.STACK_START_FAILED,
        `The local stack runs 1 to ${maxKafkaBrokers} Kafka brokers, not ${ctx.kafkaBrokers}.`,
      );
    }
    if (recorded !== undefined && recorded !== ctx.kafkaBrokers) {
      throw new AgentStreamsError(
        ErrorCode.STACK_START_FAILED,
        `${dir} holds the data of ${recorded} Kafka broker${recorded === 1 ? '' : 's'}, not ${ctx.kafkaBrokers}. ` +
          `Run \`stack up --brokers ${recorded}\`, or \`stack reset\` (deletes the data), or choose another AS_STACK_DIR.`,
        { details: { recorded, wanted: ctx.kafkaBrokers } },
      );
    }
    // SCRAM users are written when the storage is formatted: a folder formatted without them cannot turn secure.
    if (ctx.kafkaSecure && recorded !== undefined && !recordedKafkaSecure(dir)) {
      throw new AgentStreamsError(
        ErrorCode.STACK_START_FAILED,
        `${dir} was formatted without the SASL_SSL listener's users, so \`stack up --secure\` cannot use it. ` +
          'Run the secure stack in another folder and ports (AS_STACK_DIR, AS_STACK_KAFKA_PORT, AS_STACK_KAFKA_CONTROLLER_PORT, AS_STACK_KAFKA_SECURE_PORT), or `stack reset` (deletes the data).',
      );
    }
  },
  async prepare(ctx) {
    if (!existsSync(libDir(ctx)) || !readdirSync(libDir(ctx)).some((f) => /^kafka_2\.13-.*\.jar$/.test(f))) {
      mavenRun(ctx, 'Apache Kafka', [
        '-f',
        join(templates(ctx), 'pom.xml'),
        'dependency:copy-dependencies',
        `-DoutputDirectory=${libDir(ctx)}`,
      ]);
    }
    const cluster = ctx.kafkaBrokers > 1;
    const kafkaDir = ctx.serviceDir('kafka');
    mkdirSync(kafkaDir, { recursive: true });
    if (ctx.kafkaSecure) {
      ensureKafkaSecurity(kafkaDir);
      const env = writeClientEnv(kafkaDir, kafkaSecureBootstrap(ctx.config.stack, ctx.kafkaBrokers));
      ctx.log(
        `kafka: SASL_SSL on ${kafkaSecureBootstrap(ctx.config.stack, ctx.kafkaBrokers).join(',')}; client settings in ${env}`,
      );
    }
    // Every node of a cluster is formatted with the same id, so it is chosen once and kept with the data.
    let id = clusterId();
    if (cluster) {
      if (existsSync(clusterFile(kafkaDir)))
        id = (JSON.parse(readFileSync(clusterFile(kafkaDir), 'utf8')) as ClusterRecord).clusterId;
      else
        writeFileSync(
          clusterFile(kafkaDir),
          `${JSON.stringify({ brokers: ctx.kafkaBrokers, clusterId: id } satisfies ClusterRecord)}\n`,
        );
    }
    const voters = nodes(ctx)
      .map((node) => `${node + 1}@127.0.0.1:${kafkaNodePorts(ctx.config.stack, node).controller}`)
      .join(',');
    for (const node of nodes(ctx)) {
      const dir = kafkaNodeDir(ctx, node);
      mkdirSync(join(dir, 'logs'), { recursive: true });
      const properties = join(dir, 'server.properties');
      const { client, controller } = kafkaNodePorts(ctx.config.stack, node);
      renderTemplate(join(templates(ctx), 'server.properties.template'), properties, {
        PORT: client,
        CONTROLLER_PORT: controller,
        DATA_DIR: dir,
        NODE_ID: node + 1,
        VOTERS: voters,
        REPLICATION: Math.min(3, ctx.kafkaBrokers),
        MIN_ISR: ctx.kafkaBrokers >= 3 ? 2 : 1,
        SECURE_LISTENER: ctx.kafkaSecure
          ? `,${secureListenerName}://127.0.0.1:${kafkaNodeSecurePort(ctx.config.stack, node)}`
          : '',
        SECURE_ADVERTISED: ctx.kafkaSecure
          ? `,${secureListenerName}://127.0.0.1:${kafkaNodeSecurePort(ctx.config.stack, node)}`
          : '',
        SECURE_PROPERTIES: ctx.kafkaSecure ? secureListenerProperties(kafkaDir) : '',
      });
      if (!existsSync(join(dir, 'data', 'meta.properties'))) {
        const scram = ctx.kafkaSecure ? scramFormatArgs(kafkaDir) : [];
        const result = spawnSync(
          'java',
          [...jvmArgs(ctx, dir), 'kafka.tools.StorageTool', 'format', '-g', '-t', id, '-c', properties, ...scram],
          { encoding: 'utf8' },
        );
        if (result.status !== 0) {
          throw new AgentStreamsError(
            ErrorCode.STACK_START_FAILED,
            `Formatting Kafka storage in ${dir}/data failed:\n${result.stdout}${result.stderr}`,
          );
        }
      }
    }
  },
  launch: (ctx) => instance(ctx, 0).launch,
  async ready(ctx) {
    // The port opens a little before the broker answers metadata requests: ask it something real. In a cluster
    // every node is asked on its own port, and must list itself and all the others: a node restarted after a
    // kill is otherwise still listed as the dead incarnation until its session times out.
    const answers = await Promise.all(
      nodes(ctx).map(async (node) => {
        // The stack's own plaintext listener, whatever security the configured clients use.
        const plaintext = {
          ...ctx.config.kafka,
          brokers: [`127.0.0.1:${kafkaNodePorts(ctx.config.stack, node).client}`],
          ssl: false,
          sslCaFile: '',
          sslCertFile: '',
          sslKeyFile: '',
          saslMechanism: 'none' as const,
        };
        const admin = kafkaClient({ ...ctx.config, kafka: plaintext }, 'stack', {
          connectionTimeout: 1000,
          retry: { retries: 0 },
          logLevel: logLevel.NOTHING,
        }).admin();
        try {
          await admin.connect();
          const cluster = await admin.describeCluster();
          return (
            cluster.brokers.length >= ctx.kafkaBrokers &&
            (ctx.kafkaBrokers === 1 || cluster.brokers.some((b) => b.nodeId === node + 1))
          );
        } catch {
          return false;
        } finally {
          await admin.disconnect();
        }
      }),
    );
    return answers.every(Boolean);
  },
  async version(ctx) {
    const jar = readdirSync(libDir(ctx)).find((f) => /^kafka_2\.13-[\d.]+\.jar$/.test(f));
    return jar?.replace(/^kafka_2\.13-/, '').replace(/\.jar$/, '') ?? 'unknown';
  },
  endpoint: (ctx) =>
    (ctx.kafkaBrokers === 1 ? ctx.config.kafka.brokers : kafkaBootstrap(ctx.config.stack, ctx.kafkaBrokers)).join(','),
};
