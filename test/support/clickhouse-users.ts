/**
 * Least-privilege ClickHouse users for one test database, written the way `stack up` writes the fleet's
 * (infra/local/services/clickhouse-users.ts) into the shared local server's users.d, which reloads them by itself.
 */
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { removeFleetUsers, writeFleetUsers } from '../../infra/local/services/clickhouse-users.ts';
import type { Config } from '../../runtime/config/index.ts';
import { openClickHouse } from '../../sinks/clickhouse/client.ts';
import { config as shared } from './stack.ts';

const root = resolve(import.meta.dirname, '../..');

export interface TestClickHouseUsers {
  /** The shared configuration with `database` and the sink and reader users set. */
  config: Config;
  /** The same as environment variables for CLI processes. */
  env: Record<string, string>;
  remove(): void;
}

export async function fleetClickHouseUsers(database: string, base: Config = shared): Promise<TestClickHouseUsers> {
  const sink = { name: `${database}_sink`, password: randomBytes(12).toString('hex') };
  const reader = { name: `${database}_reader`, password: randomBytes(12).toString('hex') };
  const dir = resolve(root, base.stack.dir, 'clickhouse');
  writeFleetUsers(dir, database, { database, sink, reader });
  const config: Config = {
    ...base,
    clickhouse: {
      ...base.clickhouse,
      database,
      sinkUser: sink.name,
      sinkPassword: sink.password,
      readerUser: reader.name,
      readerPassword: reader.password,
    },
  };
  // The server rereads users.d every few seconds.
  const deadline = Date.now() + 20_000;
  for (const role of ['sink', 'reader'] as const) {
    for (;;) {
      const client = openClickHouse(config, { role, database: null });
      const ok = await client.query({ query: 'SELECT 1', format: 'JSONEachRow' }).then(
        () => true,
        () => false,
      );
      await client.close();
      if (ok) break;
      if (Date.now() > deadline)
        throw new Error(`ClickHouse did not load the ${role} user of ${database} from ${dir}/etc/users.d within 20 s`);
      await sleep(250);
    }
  }
  return {
    config,
    env: {
      AS_CLICKHOUSE_DATABASE: database,
      AS_CLICKHOUSE_SINK_USER: sink.name,
      AS_CLICKHOUSE_SINK_PASSWORD: sink.password,
      AS_CLICKHOUSE_READER_USER: reader.name,
      AS_CLICKHOUSE_READER_PASSWORD: reader.password,
    },
    remove: () => removeFleetUsers(dir, database),
  };
}
