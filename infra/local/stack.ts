/**
 * `agent-streams stack up|down|status|logs|reset`: the real Kafka, schema registry, Redis and ClickHouse on
 * 127.0.0.1, started from artefacts cached under the project. Idempotent: `up` starts only what is not running,
 * `down` stops exactly the pids `up` wrote. A service may run several processes (a Kafka cluster: one per node);
 * each has its own folder, pid file and log, and is started, adopted and stopped on its own.
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../../runtime/config/index.ts';
import { AgentStreamsError, ErrorCode } from '../../runtime/errors.ts';
import {
  findByWorkingDirectory,
  isOurs,
  portInUse,
  readPid,
  removeFile,
  startDetached,
  stopPid,
  tailFile,
} from './process.ts';
import {
  serviceNames,
  type LocalService,
  type ServiceInstance,
  type ServiceName,
  type StackContext,
} from './service.ts';
import { ensureTools } from './tools.ts';
import { kafkaService, recordedKafkaBrokers } from './services/kafka.ts';
import { recordedKafkaSecure } from './services/kafka-security.ts';
import { registryService } from './services/registry.ts';
import { redisService } from './services/redis.ts';
import { clickhouseService } from './services/clickhouse.ts';

export const services: Record<ServiceName, LocalService> = {
  kafka: kafkaService,
  registry: registryService,
  redis: redisService,
  clickhouse: clickhouseService,
};

export interface StackOptions {
  /**
   * Kafka brokers to run. Default: what the stack folder records (a cluster records its size), else 1. A folder
   * holding data of another size is refused by `up`.
   */
  kafkaBrokers?: number;
  /** Add Kafka's SASL_SSL listener. Default: whether the stack folder was set up secure. */
  kafkaSecure?: boolean;
}

export function createStackContext(
  config: Config,
  root: string,
  log: (line: string) => void = () => {},
  options: StackOptions = {},
): StackContext {
  const stackDir = resolve(root, config.stack.dir);
  const cacheDir = resolve(root, config.stack.cacheDir);
  const serviceDir = (name: ServiceName): string => join(stackDir, name);
  return {
    config,
    root,
    stackDir,
    cacheDir,
    serviceDir,
    kafkaBrokers: options.kafkaBrokers ?? recordedKafkaBrokers(serviceDir('kafka')) ?? 1,
    kafkaSecure: options.kafkaSecure || recordedKafkaSecure(serviceDir('kafka')),
    log,
  };
}

function instancesOf(ctx: StackContext, service: LocalService): ServiceInstance[] {
  return (
    service.instances?.(ctx) ?? [
      {
        label: service.name,
        dir: ctx.serviceDir(service.name),
        ports: service.ports(ctx),
        launch: service.launch(ctx),
      },
    ]
  );
}

const instancePidFile = (service: LocalService, instance: ServiceInstance): string =>
  join(instance.dir, `${service.name}.pid`);
const instanceLogFile = (service: LocalService, instance: ServiceInstance): string =>
  join(instance.dir, `${service.name}.log`);
/** The log of a service's (first) process. */
export const logFile = (ctx: StackContext, name: ServiceName): string =>
  instanceLogFile(services[name], instancesOf(ctx, services[name])[0]!);

function runningPid(ctx: StackContext, service: LocalService, instance: ServiceInstance): number | undefined {
  const file = instancePidFile(service, instance);
  const pid = readPid(file);
  if (pid !== undefined && isOurs(pid, ctx.stackDir)) return pid;
  // The pid file is gone or stale but the server may still run in its folder: adopt it rather than report its
  // port as taken by a stranger.
  const found = existsSync(instance.dir) ? findByWorkingDirectory(instance.dir, instance.launch.command) : undefined;
  if (found !== undefined) writeFileSync(file, `${found}\n`);
  return found;
}

/** The pids of a service's running processes, in instance order (a Kafka cluster: node 0 first). */
export function servicePids(ctx: StackContext, name: ServiceName): Array<number | undefined> {
  return instancesOf(ctx, services[name]).map((instance) => runningPid(ctx, services[name], instance));
}

function select(names?: readonly ServiceName[]): LocalService[] {
  return (names && names.length > 0 ? names : serviceNames).map((name) => services[name]);
}

export interface UpResult {
  name: ServiceName;
  action: 'started' | 'already running';
  seconds: number;
}

export async function stackUp(ctx: StackContext, names?: readonly ServiceName[]): Promise<UpResult[]> {
  const chosen = select(names);
  for (const service of chosen) service.checkLayout?.(ctx);
  ensureTools(
    chosen.flatMap((s) => s.tools),
    ctx.log,
  );
  mkdirSync(ctx.stackDir, { recursive: true });
  mkdirSync(ctx.cacheDir, { recursive: true });

  // Per service, the processes that are not running (all of them, or the killed nodes of a cluster).
  const toStart = new Map<LocalService, ServiceInstance[]>();
  const results: UpResult[] = [];
  for (const service of chosen) {
    mkdirSync(ctx.serviceDir(service.name), { recursive: true });
    const idle: ServiceInstance[] = [];
    for (const instance of instancesOf(ctx, service)) {
      if (runningPid(ctx, service, instance) !== undefined) continue;
      removeFile(instancePidFile(service, instance));
      for (const { port, env } of instance.ports) {
        if (await portInUse(port)) {
          throw new AgentStreamsError(
            ErrorCode.STACK_PORT_TAKEN,
            `Cannot start ${instance.label}: port ${port} on 127.0.0.1 is already taken by a process this stack did not start. ` +
              `Stop that process or choose another port with ${env}=<port>.`,
            { details: { service: service.name, port, env } },
          );
        }
      }
      idle.push(instance);
    }
    if (idle.length === 0) results.push({ name: service.name, action: 'already running', seconds: 0 });
    else toStart.set(service, idle);
  }
  // Fetching and formatting can take a while on a cold machine; do it before any server starts so that a
  // failed download leaves nothing half-running.
  for (const service of toStart.keys()) {
    ctx.log(`${service.name}: preparing`);
    await service.prepare(ctx);
  }
  const started: Array<{ service: LocalService; pids: Array<{ instance: ServiceInstance; pid: number }>; at: number }> =
    [];
  for (const [service, idle] of toStart) {
    const at = Date.now();
    const pids = idle.map((instance) => {
      mkdirSync(instance.dir, { recursive: true });
      const pid = startDetached({
        ...instance.launch,
        logFile: instanceLogFile(service, instance),
        pidFile: instancePidFile(service, instance),
      });
      ctx.log(`${instance.label}: started pid ${pid}`);
      return { instance, pid };
    });
    started.push({ service, pids, at });
  }

  const deadline = Date.now() + ctx.config.stack.readyTimeoutSeconds * 1000;
  await Promise.all(
    started.map(async ({ service, pids, at }) => {
      const log = (instance: ServiceInstance): string => instanceLogFile(service, instance);
      for (;;) {
        const exited = pids.find(({ pid }) => !isOurs(pid, ctx.stackDir));
        if (exited) {
          throw new AgentStreamsError(
            ErrorCode.STACK_START_FAILED,
            `${exited.instance.label} exited during start-up. Last lines of ${log(exited.instance)}:\n${tailFile(log(exited.instance), 25)}`,
            { details: { service: service.name } },
          );
        }
        if (await service.ready(ctx).catch(() => false)) break;
        if (Date.now() > deadline) {
          throw new AgentStreamsError(
            ErrorCode.STACK_NOT_READY,
            `${service.name} (pid ${pids.map((p) => p.pid).join(', ')}) did not become ready within ${ctx.config.stack.readyTimeoutSeconds}s ` +
              `(raise AS_STACK_READY_TIMEOUT on a slow machine). Last lines of ${log(pids[0]!.instance)}:\n` +
              tailFile(log(pids[0]!.instance), 25),
            { details: { service: service.name }, retriable: true },
          );
        }
        await sleep(250);
      }
      const seconds = (Date.now() - at) / 1000;
      ctx.log(`${service.name}: ready in ${seconds.toFixed(1)}s`);
      results.push({ name: service.name, action: 'started', seconds });
    }),
  );
  await stackProvision(ctx, names);
  return serviceNames.flatMap((name) => results.filter((r) => r.name === name));
}

/** Applies the services' users and access rules (Redis ACL, ClickHouse users) to running servers; part of every `up`. */
export async function stackProvision(ctx: StackContext, names?: readonly ServiceName[]): Promise<void> {
  for (const service of select(names)) await service.provision?.(ctx);
}

export interface DownResult {
  name: ServiceName;
  action: 'stopped' | 'killed' | 'not running';
}

export async function stackDown(ctx: StackContext, names?: readonly ServiceName[]): Promise<DownResult[]> {
  const results: DownResult[] = [];
  // Reverse start order: clients of Kafka (the registry) go before Kafka.
  for (const service of select(names).reverse()) {
    // A cluster's nodes stop together: stopped one by one, the last ones would wait on a controller quorum that
    // is already gone.
    const outcomes = await Promise.all(
      instancesOf(ctx, service).map(async (instance) => {
        const pid = runningPid(ctx, service, instance);
        const outcome = pid === undefined ? 'not running' : await stopPid(pid, 20_000);
        removeFile(instancePidFile(service, instance));
        return outcome;
      }),
    );
    const action = outcomes.includes('killed')
      ? 'killed'
      : outcomes.some((o) => o === 'stopped' || o === 'gone')
        ? 'stopped'
        : 'not running';
    results.push({ name: service.name, action });
  }
  return results.reverse();
}

export interface StatusRow {
  name: ServiceName;
  state: 'healthy' | 'unhealthy' | 'stopped' | 'port taken by another process';
  /** The first process; `pids` lists every one (a Kafka cluster's nodes). */
  pid?: number;
  pids?: number[];
  version?: string;
  endpoint: string;
}

export async function stackStatus(ctx: StackContext, names?: readonly ServiceName[]): Promise<StatusRow[]> {
  return Promise.all(
    select(names).map(async (service): Promise<StatusRow> => {
      const endpoint = service.endpoint(ctx);
      const instances = instancesOf(ctx, service);
      const running = instances.map((instance) => runningPid(ctx, service, instance));
      const pids = running.filter((pid) => pid !== undefined);
      if (pids.length === 0) {
        const taken = await Promise.all(
          instances.flatMap((instance) => instance.ports).map(({ port }) => portInUse(port)),
        );
        return {
          name: service.name,
          state: taken.some(Boolean) ? 'port taken by another process' : 'stopped',
          endpoint,
        };
      }
      const ids = { pid: pids[0]!, ...(instances.length > 1 ? { pids } : {}) };
      const healthy = pids.length === instances.length && (await service.ready(ctx).catch(() => false));
      if (!healthy) return { name: service.name, state: 'unhealthy', ...ids, endpoint };
      const version = await service.version(ctx).catch((error: Error) => `unknown (${error.message})`);
      return { name: service.name, state: 'healthy', ...ids, version, endpoint };
    }),
  );
}

export async function stackReset(ctx: StackContext): Promise<void> {
  await stackDown(ctx);
  rmSync(ctx.stackDir, { recursive: true, force: true });
}

export function stackLogs(ctx: StackContext, name: ServiceName, lines: number): string {
  const instances = instancesOf(ctx, services[name]);
  if (instances.length === 1) return tailFile(logFile(ctx, name), lines);
  return instances
    .map((instance) => `== ${instance.label} ==\n${tailFile(instanceLogFile(services[name], instance), lines)}`)
    .join('\n');
}
