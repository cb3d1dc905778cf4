/**
 * The README's main job. At this stage of the project it is the smoke pipeline on the local stack (started if
 * needed): schemas registered, Avro events through Kafka, state in Redis, rows in ClickHouse, all printed.
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../../runtime/config/index.ts';
import { createStackContext, stackUp } from '../../infra/local/stack.ts';
import { runSmokePipeline } from '../../topologies/smoke/pipeline.ts';
import { projectRoot } from '../paths.ts';
import { usageError, type Command } from '../main.ts';

export const demoCommand: Command = {
  summary: 'Start the local stack and run the smoke pipeline through Kafka, the registry, Redis and ClickHouse',
  usage: 'demo [--events N]',
  async run(args) {
    const { values } = parseArgs({ args, options: { events: { type: 'string', default: '10000' } } });
    const events = Number(values.events);
    if (!Number.isInteger(events) || events < 1 || events > 10_000_000) throw usageError(`--events takes a whole number from 1 to 10000000, got "${values.events}"`);
    const config = loadConfig();
    const ctx = createStackContext(config, projectRoot, (line) => console.log(`stack: ${line}`));
    const up = await stackUp(ctx);
    console.log(`stack: ${up.map((r) => `${r.name} ${r.action}`).join(', ')}`);
    const result = await runSmokePipeline(config, projectRoot, {
      events,
      symbols: ['ACME', 'BOLT', 'CRUX', 'DYNA', 'ECHO', 'FLUX', 'GRID', 'HALO'],
      log: (line) => console.log(line),
    });
    console.log('\nper-symbol state (Redis) and rows (ClickHouse):');
    console.log('symbol  ticks     low      high     last');
    for (const s of result.perSymbol) {
      console.log(`${s.symbol.padEnd(6)} ${String(s.ticks).padStart(6)} ${s.low.toFixed(2).padStart(8)} ${s.high.toFixed(2).padStart(8)} ${s.last.toFixed(2).padStart(8)}`);
    }
    const ok = result.consumed === result.produced && result.clickhouseRows === result.perSymbol.length && result.redisKeys === result.perSymbol.length;
    console.log(`\nsmoke pipeline ${ok ? 'OK' : 'FAILED'}: produced ${result.produced}, consumed ${result.consumed}, ${result.redisKeys} Redis keys, ${result.clickhouseRows} ClickHouse rows`);
    console.log(`timings (s): ${Object.entries(result.seconds).map(([k, v]) => `${k} ${v}`).join(', ')}`);
    console.log(`query it: clickhouse-client --port ${config.stack.clickhouseTcpPort} -q "SELECT symbol, evidence FROM ${config.clickhouse.database}.findings FINAL WHERE portfolio_id = '${result.runId}'"`);
    console.log('stop the stack: cli/agent-streams stack down');
    return ok ? 0 : 1;
  },
};
