/**
 * `agent-streams run <topology> --processor NAME`: one consumer-group member. Start it N times for N members.
 * SIGTERM/SIGINT finish the batch in flight, commit, leave the group and exit within the deadline.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { loadConfig, redactConfig } from '../../runtime/config/index.ts';
import { runProcessor } from '../../runtime/engine/runner.ts';
import { createLogger, eventLog, installProcessLogger } from '../../runtime/observability/log.ts';
import { createMetrics } from '../../runtime/observability/metrics.ts';
import { serveMember } from '../../runtime/observability/server.ts';
import type { Topology } from '../../runtime/topology/topology.ts';
import { expectPositionals, usageError, wholeNumber } from '../args.ts';
import { AgentStreamsError, ErrorCode } from '../../runtime/errors.ts';
import type { Command } from '../main.ts';
import { memberServices, servicesOf } from '../services.ts';

/**
 * The topology a file exports by default (a topology, or a function returning one). A path that names no file is a
 * usage error; a file that fails to load or builds an invalid topology is a runtime error naming the file.
 */
export async function loadTopology(file: string): Promise<Topology> {
  const path = resolve(file);
  if (!existsSync(path) || !statSync(path).isFile()) {
    throw usageError(
      `topology file ${file} does not exist (looked for ${path}); pass a file that exports default defineTopology(…), e.g. topologies/market-signals.ts`,
    );
  }
  let module: { default?: Topology | (() => Topology) };
  try {
    module = (await import(pathToFileURL(path).href)) as typeof module;
  } catch (error) {
    if (error instanceof AgentStreamsError) throw error;
    throw new AgentStreamsError(
      ErrorCode.TOPOLOGY_INVALID,
      `cannot load topology file ${relative(process.cwd(), path) || file}: ${(error as Error).message.split('\n')[0]}; fix the file (run \`npx tsc --noEmit\` for its type errors)`,
      { cause: error },
    );
  }
  const exported = module.default;
  const topology = typeof exported === 'function' ? exported() : exported;
  if (!topology || typeof topology.groupId !== 'function')
    throw usageError(`${file} must export default a topology made with defineTopology()`);
  return topology;
}

const options = {
  processor: { type: 'string', short: 'p' },
  'shutdown-timeout': { type: 'string', default: '30' },
} as const;

export const runCommand: Command = {
  summary: 'Run one processor of a topology as a consumer-group member (start it N times for N members)',
  usage: 'run <topology-file> --processor NAME [--shutdown-timeout SECONDS]',
  options,
  files: true,
  async run(args) {
    const { positionals, values } = parseArgs({ args, allowPositionals: true, options });
    const [file] = expectPositionals('run', positionals, ['topology-file']);
    if (!values.processor) throw usageError("run needs --processor NAME (one of the topology's processors)");
    const shutdownSeconds = wholeNumber('shutdown-timeout', values['shutdown-timeout'], 1, 3600);
    const config = loadConfig();
    const topology = await loadTopology(file!);
    if (!topology.processors[values.processor])
      throw usageError(
        `topology ${topology.application} has no processor "${values.processor}"; it has ${Object.keys(topology.processors).join(', ')}`,
      );
    const metrics = createMetrics({ defaultLabels: { application: topology.application } });
    const instanceId = randomUUID().slice(0, 8);
    const log = eventLog(
      installProcessLogger(
        createLogger({ application: topology.application, processor: values.processor, instance: instanceId, config }),
      ),
    );
    log('starting', { topology: file, config: redactConfig(config) });
    // The services the processor asks (`enrich.service`), as its topology declares them; none for most processors.
    const services = await memberServices(config, topology, servicesOf(topology, values.processor), log, metrics);
    const handle = await runProcessor({
      config,
      topology,
      processor: values.processor,
      metrics,
      log,
      instanceId,
      stallMs: config.health.stallMs,
      services: services.services,
    });
    const server = await serveMember({
      name: values.processor,
      check: 'member',
      member: handle,
      metrics,
      listen: config.metrics,
    });
    log('started', { metricsPort: server.port });
    const deadlineMs = shutdownSeconds * 1000;
    await new Promise<void>((done) => {
      const shutdown = (signal: string): void => {
        log('stopping', { signal });
        const timer = setTimeout(() => {
          log('shutdown deadline passed; exiting');
          process.exit(1);
        }, deadlineMs);
        timer.unref();
        void handle
          .stop()
          .then(() => services.close())
          .then(() => server.close())
          .then(() => done());
      };
      process.once('SIGTERM', () => shutdown('SIGTERM'));
      process.once('SIGINT', () => shutdown('SIGINT'));
    });
    log('stopped', { ...handle.stats });
    return 0;
  },
};
