import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { loadConfig } from '../../runtime/config/index.ts';
import { loadSchemas } from '../../runtime/serde/schemas.ts';
import { readTables, writeTable } from '../../runtime/state/tables.ts';
import { loadTopology } from './run.ts';
import { kafkaClient } from '../../runtime/kafka/client.ts';
import { projectRoot } from '../paths.ts';
import { usageError, type Command } from '../main.ts';

export const tableCommand: Command = {
  summary: 'Load or show a shared table (e.g. portfolios) that processors read; rows are validated against their schema',
  usage: 'table load <topology-file> <table> <rows.json> | table show <topology-file> <table>',
  async run(args) {
    const [action, file, name, rowsFile] = args;
    if (!file || !name || (action === 'load' && !rowsFile) || (action !== 'load' && action !== 'show')) throw usageError(`usage: agent-streams ${this.usage}`);
    const config = loadConfig();
    const topology = await loadTopology(file);
    const redis = new Redis(config.redis.url, { lazyConnect: true, maxRetriesPerRequest: 2 });
    await redis.connect();
    try {
      if (action === 'show') {
        const rows = (await readTables(redis, topology, [name], kafkaClient(config, 'table'))).get(name)!;
        console.log(JSON.stringify([...rows.values()], null, 2));
        return 0;
      }
      let rows: unknown;
      try {
        rows = JSON.parse(readFileSync(rowsFile!, 'utf8'));
      } catch (error) {
        throw usageError(`${rowsFile} is not readable JSON: ${(error as Error).message}`);
      }
      if (!Array.isArray(rows)) throw usageError(`${rowsFile} must hold a JSON array of rows`);
      const count = await writeTable(redis, kafkaClient(config, 'table'), topology, name, rows, loadSchemas(join(projectRoot, 'schemas')));
      console.log(`loaded ${count} rows into table ${name} of ${topology.application} (topic ${topology.tableTopic(name)}, cached in ${topology.tableKey(name)})`);
      return 0;
    } finally {
      redis.disconnect();
    }
  },
};
