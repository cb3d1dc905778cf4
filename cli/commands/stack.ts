import { parseArgs } from 'node:util';
import { loadConfig } from '../../runtime/config/index.ts';
import { serviceNames, type ServiceName } from '../../infra/local/service.ts';
import { createStackContext, stackDown, stackLogs, stackReset, stackStatus, stackUp } from '../../infra/local/stack.ts';
import { kafkaBootstrap, kafkaSecureBootstrap, maxKafkaBrokers } from '../../infra/local/services/kafka.ts';
import { kafkaSecurityFiles } from '../../infra/local/services/kafka-security.ts';
import { projectRoot } from '../paths.ts';
import { usageError } from '../args.ts';
import { checkFormat, dataFormats, formatOption } from '../format.ts';
import type { Command } from '../main.ts';

function parseServices(names: string[]): ServiceName[] {
  for (const name of names) {
    if (!(serviceNames as readonly string[]).includes(name)) {
      throw usageError(`unknown service "${name}"; the stack has ${serviceNames.join(', ')}`);
    }
  }
  return names as ServiceName[];
}

const options = {
  lines: { type: 'string', short: 'n' },
  brokers: { type: 'string' },
  secure: { type: 'boolean' },
  format: formatOption,
} as const;

export const stackCommand: Command = {
  summary: 'Run the local Kafka, schema registry, Redis and ClickHouse on 127.0.0.1 (up|down|status|logs|reset)',
  usage:
    'stack up [--brokers N] [--secure] [service…] | stack down|status|reset [service…] [--format table|json] | stack logs <service> [--lines N]',
  options,
  actions: ['up', 'down', 'status', 'logs', 'reset'],
  async run(args) {
    const { positionals, values } = parseArgs({ args, allowPositionals: true, options });
    const format = checkFormat(values.format, dataFormats);
    const [action, ...rest] = positionals;
    const config = loadConfig();
    let kafkaBrokers: number | undefined;
    if (values.brokers !== undefined) {
      kafkaBrokers = Number(values.brokers);
      if (action !== 'up')
        throw usageError(
          '--brokers goes with `stack up`; down, status and logs read the size the stack folder records',
        );
      if (!Number.isInteger(kafkaBrokers) || kafkaBrokers < 1 || kafkaBrokers > maxKafkaBrokers)
        throw usageError(`--brokers needs 1 to ${maxKafkaBrokers}, got "${values.brokers}"`);
    }
    if (values.secure && action !== 'up')
      throw usageError('--secure goes with `stack up`; a secure stack folder stays secure');
    const ctx = createStackContext(config, projectRoot, (line) => console.error(`stack: ${line}`), {
      ...(kafkaBrokers === undefined ? {} : { kafkaBrokers }),
      ...(values.secure ? { kafkaSecure: true } : {}),
    });
    switch (action) {
      case 'up': {
        const started = Date.now();
        const results = await stackUp(ctx, parseServices(rest));
        for (const r of results)
          console.log(
            `${r.name.padEnd(11)} ${r.action}${r.action === 'started' ? ` (ready in ${r.seconds.toFixed(1)}s)` : ''}`,
          );
        console.log(`stack up in ${((Date.now() - started) / 1000).toFixed(1)}s`);
        if (ctx.kafkaBrokers > 1 && results.some((r) => r.name === 'kafka')) {
          console.log(
            `kafka      ${ctx.kafkaBrokers} brokers; bootstrap: AS_KAFKA_BROKERS=${kafkaBootstrap(config.stack, ctx.kafkaBrokers).join(',')}`,
          );
        }
        if (ctx.kafkaSecure && results.some((r) => r.name === 'kafka')) {
          const env = `${kafkaSecurityFiles(ctx.serviceDir('kafka')).dir}/client.env`;
          console.log(
            `kafka      SASL_SSL on ${kafkaSecureBootstrap(config.stack, ctx.kafkaBrokers).join(',')}; client settings: set -a; . ${env}; set +a`,
          );
        }
        return 0;
      }
      case 'down': {
        for (const r of await stackDown(ctx, parseServices(rest))) console.log(`${r.name.padEnd(11)} ${r.action}`);
        return 0;
      }
      case 'status': {
        const rows = await stackStatus(ctx, parseServices(rest));
        if (format === 'json') console.log(JSON.stringify(rows, null, 2));
        else
          for (const r of rows) {
            console.log(
              [
                r.name.padEnd(11),
                r.state.padEnd(9),
                (r.version ?? '-').padEnd(15),
                r.endpoint.padEnd(44),
                r.pids ? `pids ${r.pids.join(',')}` : r.pid ? `pid ${r.pid}` : '',
              ]
                .join(' ')
                .trimEnd(),
            );
          }
        return rows.every((r) => r.state === 'healthy') ? 0 : 1;
      }
      case 'logs': {
        const [name] = parseServices(rest);
        if (!name) throw usageError('stack logs needs a service name');
        console.log(stackLogs(ctx, name, Number(values.lines ?? 50)));
        return 0;
      }
      case 'reset':
        await stackReset(ctx);
        console.log(`stopped the stack and removed ${ctx.stackDir}`);
        return 0;
      default:
        throw usageError(`stack needs one of up, down, status, logs, reset (got "${action ?? ''}")`);
    }
  },
};
