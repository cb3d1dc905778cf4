/**
 * `agent-streams stack up|down|status|logs|reset`: the real Kafka, schema registry, Redis and ClickHouse on
 * 127.0.0.1, started from artefacts cached under the project. Idempotent: `up` starts only what is not running,
 * `down` stops exactly the pids `up` wrote.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../../runtime/config/index.ts';
import { AgentStreamsError, ErrorCode } from '../../runtime/errors.ts';
import { findByWorkingDirectory, isOurs, portInUse, readPid, removeFile, startDetached, stopPid, tailFile } from './process.ts';
import { serviceNames, type LocalService, type ServiceName, type StackContext } from './service.ts';
import { ensureTools } from './tools.ts';
import { kafkaService } from './services/kafka.ts';
import { registryService } from './services/registry.ts';
import { redisService } from './services/redis.ts';
import { clickhouseService } from './services/clickhouse.ts';

export const services: Record<ServiceName, LocalService> = {
  kafka: kafkaService,
  registry: registryService,
  redis: redisService,
  clickhouse: clickhouseService,
};

export function createStackContext(config: Config, root: string, log: (line: string) => void = () => {}): StackContext {
  const stackDir = resolve(root, config.stack.dir);
  const cacheDir = resolve(root, config.stack.cacheDir);
  return {
    config,
    root,
    stackDir,
    cacheDir,
    serviceDir: (name) => join(stackDir, name),
    log,
  };
}

const pidFile = (ctx: StackContext, name: ServiceName): string => join(ctx.serviceDir(name), `${name}.pid`);
export const logFile = (ctx: StackContext, name: ServiceName): string => join(ctx.serviceDir(name), `${name}.log`);

function runningPid(ctx: StackContext, name: ServiceName): number | undefined {
  const pid = readPid(pidFile(ctx, name));
  if (pid !== undefined && isOurs(pid, ctx.stackDir)) return pid;
  // The pid file is gone or stale but the server may still run in its folder: adopt it rather than report its
  // port as taken by a stranger.
  const found = findByWorkingDirectory(ctx.serviceDir(name), services[name].launch(ctx).command);
  if (found !== undefined) writeFileSync(pidFile(ctx, name), `${found}\n`);
  return found;
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
  ensureTools(chosen.flatMap((s) => s.tools), ctx.log);
  mkdirSync(ctx.stackDir, { recursive: true });
  mkdirSync(ctx.cacheDir, { recursive: true });

  const started: Array<{ service: LocalService; pid: number; at: number }> = [];
  const results: UpResult[] = [];
  for (const service of chosen) {
    mkdirSync(ctx.serviceDir(service.name), { recursive: true });
    if (runningPid(ctx, service.name) !== undefined) {
      results.push({ name: service.name, action: 'already running', seconds: 0 });
      continue;
    }
    removeFile(pidFile(ctx, service.name));
    for (const { port, env } of service.ports(ctx)) {
      if (await portInUse(port)) {
        throw new AgentStreamsError(
          ErrorCode.STACK_PORT_TAKEN,
          `Cannot start ${service.name}: port ${port} on 127.0.0.1 is already taken by a process this stack did not start. ` +
            `Stop that process or choose another port with ${env}=<port>.`,
          { details: { service: service.name, port, env } },
        );
      }
    }
  }
  // Fetching and formatting can take a while on a cold machine; do it before any server starts so that a
  // failed download leaves nothing half-running.
  for (const service of chosen) {
    if (results.some((r) => r.name === service.name)) continue;
    ctx.log(`${service.name}: preparing`);
    await service.prepare(ctx);
  }
  for (const service of chosen) {
    if (results.some((r) => r.name === service.name)) continue;
    const spec = service.launch(ctx);
    const at = Date.now();
    const pid = startDetached({ ...spec, logFile: logFile(ctx, service.name), pidFile: pidFile(ctx, service.name) });
    ctx.log(`${service.name}: started pid ${pid}`);
    started.push({ service, pid, at });
  }

  const deadline = Date.now() + ctx.config.stack.readyTimeoutSeconds * 1000;
  await Promise.all(
    started.map(async ({ service, pid, at }) => {
      for (;;) {
        if (!isOurs(pid, ctx.stackDir)) {
          throw new AgentStreamsError(
            ErrorCode.STACK_START_FAILED,
            `${service.name} exited during start-up. Last lines of ${logFile(ctx, service.name)}:\n${tailFile(logFile(ctx, service.name), 25)}`,
            { details: { service: service.name } },
          );
        }
        if (await service.ready(ctx).catch(() => false)) break;
        if (Date.now() > deadline) {
          throw new AgentStreamsError(
            ErrorCode.STACK_NOT_READY,
            `${service.name} (pid ${pid}) did not become ready within ${ctx.config.stack.readyTimeoutSeconds}s ` +
              `(raise AS_STACK_READY_TIMEOUT on a slow machine). Last lines of ${logFile(ctx, service.name)}:\n` +
              tailFile(logFile(ctx, service.name), 25),
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
  return serviceNames.flatMap((name) => results.filter((r) => r.name === name));
}

export interface DownResult {
  name: ServiceName;
  action: 'stopped' | 'killed' | 'not running';
}

export async function stackDown(ctx: StackContext, names?: readonly ServiceName[]): Promise<DownResult[]> {
  const results: DownResult[] = [];
  // Reverse start order: clients of Kafka (the registry) go before Kafka.
  for (const service of select(names).reverse()) {
    const pid = runningPid(ctx, service.name);
    if (pid === undefined) {
      removeFile(pidFile(ctx, service.name));
      results.push({ name: service.name, action: 'not running' });
      continue;
    }
    const outcome = await stopPid(pid, 20_000);
    removeFile(pidFile(ctx, service.name));
    results.push({ name: service.name, action: outcome === 'killed' ? 'killed' : 'stopped' });
  }
  return results.reverse();
}

export interface StatusRow {
  name: ServiceName;
  state: 'healthy' | 'unhealthy' | 'stopped' | 'port taken by another process';
  pid?: number;
  version?: string;
  endpoint: string;
}

export async function stackStatus(ctx: StackContext, names?: readonly ServiceName[]): Promise<StatusRow[]> {
  return Promise.all(
    select(names).map(async (service): Promise<StatusRow> => {
      const endpoint = service.endpoint(ctx);
      const pid = runningPid(ctx, service.name);
      if (pid === undefined) {
        const taken = await Promise.all(service.ports(ctx).map(({ port }) => portInUse(port)));
        return { name: service.name, state: taken.some(Boolean) ? 'port taken by another process' : 'stopped', endpoint };
      }
      const healthy = await service.ready(ctx).catch(() => false);
      if (!healthy) return { name: service.name, state: 'unhealthy', pid, endpoint };
      const version = await service.version(ctx).catch((error: Error) => `unknown (${error.message})`);
      return { name: service.name, state: 'healthy', pid, version, endpoint };
    }),
  );
}

export async function stackReset(ctx: StackContext): Promise<void> {
  await stackDown(ctx);
  rmSync(ctx.stackDir, { recursive: true, force: true });
}

export function stackLogs(ctx: StackContext, name: ServiceName, lines: number): string {
  return tailFile(logFile(ctx, name), lines);
}
