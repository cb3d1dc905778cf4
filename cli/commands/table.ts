import { existsSync, readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { loadConfig } from '../../runtime/config/index.ts';
import { loadSchemas } from '../../runtime/serde/schemas.ts';
import { readTables, writeTable } from '../../runtime/state/tables.ts';
import { loadTopology } from './run.ts';
import { cliKafka } from '../kafka.ts';
import { expectPositionals, usageError } from '../args.ts';
import { checkFormat, dataFormats, formatRows, type Row } from '../format.ts';
import type { Command } from '../main.ts';

// The rows' schemas: the `schemas` folder of the working directory (this repository's root from cli/agent-streams,
// a user's project from `npx agent-streams`), or --schemas DIR.
const options = { format: { type: 'string' }, schemas: { type: 'string', default: 'schemas' } } as const;

export const tableCommand: Command = {
  summary:
    'Load or show a shared table (e.g. portfolios) that processors read; rows are validated against their schema',
  usage:
    'table load <topology-file> <table> <rows.json> [--schemas DIR] | table show <topology-file> <table> [--format json|table]',
  options,
  actions: ['load', 'show'],
  files: true,
  async run(args) {
    const { positionals, values } = parseArgs({ args, allowPositionals: true, options });
    const [action] = positionals;
    if (action !== 'load' && action !== 'show') throw usageError(`table needs load or show, got "${action ?? ''}"`);
    const [, file, name, rowsFile] = expectPositionals(
      `table ${action}`,
      positionals,
      action === 'load' ? ['load', 'topology-file', 'table', 'rows.json'] : ['show', 'topology-file', 'table'],
    ) as [string, string, string, string?];
    // Rows are JSON documents: JSON stays the default here, the table is the overview.
    const format = checkFormat(values.format ?? 'json', dataFormats);
    const config = loadConfig();
    const topology = await loadTopology(file);
    if (!topology.tables?.[name])
      throw usageError(
        `topology ${topology.application} has no table "${name}"; it has ${Object.keys(topology.tables ?? {}).join(', ') || 'none'}`,
      );
    // One attempt to connect: a Redis that is not there is one line (cli/failure.ts), not endless reconnects.
    const redis = new Redis(config.redis.url, {
      lazyConnect: true,
      maxRetriesPerRequest: 2,
      retryStrategy: () => null,
    });
    let refused: unknown;
    redis.on('error', (error) => void (refused = error));
    try {
      // ioredis rejects with "Connection is closed"; the reason (ECONNREFUSED, auth) came as an 'error' event.
      await redis.connect().catch((error: unknown) => {
        throw refused ?? error;
      });
      if (action === 'show') {
        const rows = (await readTables(redis, topology, [name], cliKafka(config, 'table'))).get(name)!;
        console.log(
          format === 'json'
            ? JSON.stringify([...rows.values()], null, 2)
            : formatRows([...rows.values()] as Row[], 'table'),
        );
        return 0;
      }
      let rows: unknown;
      try {
        rows = JSON.parse(readFileSync(rowsFile!, 'utf8'));
      } catch (error) {
        throw usageError(`${rowsFile} is not readable JSON: ${(error as Error).message}`);
      }
      if (!Array.isArray(rows)) throw usageError(`${rowsFile} must hold a JSON array of rows`);
      const schemasDir = resolve(values.schemas);
      if (!existsSync(schemasDir) || !statSync(schemasDir).isDirectory())
        throw usageError(
          `schemas folder ${values.schemas} does not exist (looked for ${schemasDir}); pass --schemas DIR with the rows' Avro schema`,
        );
      const count = await writeTable(redis, cliKafka(config, 'table'), topology, name, rows, loadSchemas(schemasDir));
      console.log(
        `loaded ${count} rows into table ${name} of ${topology.application} (topic ${topology.tableTopic(name)}, cached in ${topology.tableKey(name)})`,
      );
      return 0;
    } finally {
      redis.disconnect();
    }
  },
};
