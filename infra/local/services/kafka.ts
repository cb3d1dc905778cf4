/**
 * Apache Kafka 4.x in KRaft mode (one JVM that is both broker and controller), from jars that Maven fetches
 * from Maven Central into the project's cache. Topics are never auto-created; transactions work on one broker.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { Kafka, logLevel } from 'kafkajs';
import { AgentStreamsError, ErrorCode } from '../../../runtime/errors.ts';
import { mavenRun } from '../maven.ts';
import { renderTemplate } from '../templates.ts';
import { hostTools } from '../tools.ts';
import type { LocalService, StackContext } from '../service.ts';

const libDir = (ctx: StackContext): string => join(ctx.cacheDir, 'kafka', 'lib');
const templates = (ctx: StackContext): string => join(ctx.root, 'infra/local/kafka');

function jvmArgs(ctx: StackContext): string[] {
  const dir = ctx.serviceDir('kafka');
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

export const kafkaService: LocalService = {
  name: 'kafka',
  tools: [hostTools.java, hostTools.mvn],
  ports: (ctx) => [
    { port: ctx.config.stack.kafkaPort, env: 'AS_STACK_KAFKA_PORT' },
    { port: ctx.config.stack.kafkaControllerPort, env: 'AS_STACK_KAFKA_CONTROLLER_PORT' },
  ],
  async prepare(ctx) {
    if (!existsSync(libDir(ctx)) || !readdirSync(libDir(ctx)).some((f) => /^kafka_2\.13-.*\.jar$/.test(f))) {
      mavenRun(ctx, 'Apache Kafka', ['-f', join(templates(ctx), 'pom.xml'), 'dependency:copy-dependencies', `-DoutputDirectory=${libDir(ctx)}`]);
    }
    const dir = ctx.serviceDir('kafka');
    mkdirSync(join(dir, 'logs'), { recursive: true });
    const properties = join(dir, 'server.properties');
    renderTemplate(join(templates(ctx), 'server.properties.template'), properties, {
      PORT: ctx.config.stack.kafkaPort,
      CONTROLLER_PORT: ctx.config.stack.kafkaControllerPort,
      DATA_DIR: dir,
    });
    if (!existsSync(join(dir, 'data', 'meta.properties'))) {
      const result = spawnSync('java', [...jvmArgs(ctx), 'kafka.tools.StorageTool', 'format', '-g', '-t', clusterId(), '-c', properties], {
        encoding: 'utf8',
      });
      if (result.status !== 0) {
        throw new AgentStreamsError(ErrorCode.STACK_START_FAILED, `Formatting Kafka storage in ${dir}/data failed:\n${result.stdout}${result.stderr}`);
      }
    }
  },
  launch(ctx) {
    const dir = ctx.serviceDir('kafka');
    return { command: 'java', args: [...jvmArgs(ctx), 'kafka.Kafka', join(dir, 'server.properties')], cwd: dir };
  },
  async ready(ctx) {
    // The port opens a little before the broker answers metadata requests: ask it something real.
    const admin = new Kafka({
      clientId: 'agent-streams-stack',
      brokers: [`127.0.0.1:${ctx.config.stack.kafkaPort}`],
      logLevel: logLevel.NOTHING,
      connectionTimeout: 1000,
      retry: { retries: 0 },
    }).admin();
    try {
      await admin.connect();
      const cluster = await admin.describeCluster();
      return cluster.brokers.length > 0;
    } finally {
      await admin.disconnect();
    }
  },
  async version(ctx) {
    const jar = readdirSync(libDir(ctx)).find((f) => /^kafka_2\.13-[\d.]+\.jar$/.test(f));
    return jar?.replace(/^kafka_2\.13-/, '').replace(/\.jar$/, '') ?? 'unknown';
  },
  endpoint: (ctx) => ctx.config.kafka.brokers.join(','),
};
