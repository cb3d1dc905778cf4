/** `agent-streams smoke`: the quickest proof that a machine's stack works, end to end (see cli/smoke-pipeline.ts). */
import { parseArgs } from 'node:util';
import { loadConfig } from '../../runtime/config/index.ts';
import { createStackContext, stackUp } from '../../infra/local/stack.ts';
import { runSmokePipeline } from '../smoke-pipeline.ts';
import { projectRoot } from '../paths.ts';
import { usageError } from '../args.ts';
import type { Command } from '../main.ts';

const options = { events: { type: 'string', default: '10000' } } as const;

export const smokeCommand: Command = {
  summary: 'Start the local stack and push events through Kafka, the registry, Redis and ClickHouse once',
  usage: 'smoke [--events N]',
  options,
  async run(args) {
    const { values } = parseArgs({ args, options });
    const events = Number(values.events);
    if (!Number.isInteger(events) || events < 1 || events > 10_000_000)
      throw usageError(`--events takes a whole number from 1 to 10000000, got "${values.events}"`);
    const config = loadConfig();
    const ctx = createStackContext(config, projectRoot, (line) => console.log(`stack: ${line}`));
    const up = await stackUp(ctx);
    console.log(`stack: ${up.map((r) => `${r.name} ${r.action}`).join(', ')}`);
    const result = await runSmokePipeline(config, projectRoot, {
      events,
      symbols: ['ACME', 'BOLT', 'CRUX', 'DYNA', 'ECHO', 'FLUX', 'GRID', 'HALO'],
      log: (line) => console.log(line),
    });
    const ok =
      result.consumed === result.produced &&
      result.clickhouseRows === result.perSymbol.length &&
      result.redisKeys === result.perSymbol.length;
    console.log(
      `smoke pipeline ${ok ? 'OK' : 'FAILED'}: produced ${result.produced}, consumed ${result.consumed}, ${result.redisKeys} Redis keys, ${result.clickhouseRows} ClickHouse rows`,
    );
    console.log(
      `timings (s): ${Object.entries(result.seconds)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
    );
    return ok ? 0 : 1;
  },
};
