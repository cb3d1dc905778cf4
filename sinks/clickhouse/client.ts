/**
 * The ClickHouse client as every part of the project opens it. The settings are the ones both ClickHouse 18.16
 * (Debian's, used locally) and current releases accept; `wait_end_of_query` makes a failure part-way through a
 * result an HTTP error instead of a silently truncated stream.
 */
import { ClickHouseLogLevel, createClient, type ClickHouseClient } from '@clickhouse/client';
import type { Config } from '../../runtime/config/index.ts';
import { ClickHouseLogger } from '../../runtime/observability/log.ts';

export interface ClickHouseOptions {
  /** Omit to connect without selecting a database (needed to create it). */
  database?: string | null;
  /**
   * Whose credentials: `admin` (AS_CLICKHOUSE_USER: migrations, tests), `sink` (AS_CLICKHOUSE_SINK_USER: inserts)
   * or `reader` (AS_CLICKHOUSE_READER_USER: queries). A role without its own user falls back to the admin user.
   */
  role?: 'admin' | 'sink' | 'reader';
}

function credentials(
  config: Config,
  role: NonNullable<ClickHouseOptions['role']>,
): { username: string; password: string } {
  const { username, password, sinkUser, sinkPassword, readerUser, readerPassword } = config.clickhouse;
  if (role === 'sink' && sinkUser !== '') return { username: sinkUser, password: sinkPassword };
  if (role === 'reader' && readerUser !== '') return { username: readerUser, password: readerPassword };
  return { username, password };
}

export function openClickHouse(config: Config, options: ClickHouseOptions = {}): ClickHouseClient {
  const database = options.database === undefined ? config.clickhouse.database : options.database;
  return createClient({
    url: config.clickhouse.url,
    ...credentials(config, options.role ?? 'admin'),
    ...(database === null ? {} : { database }),
    compression: { request: false, response: false },
    clickhouse_settings: { wait_end_of_query: 1, output_format_json_quote_64bit_integers: 0 },
    request_timeout: 60_000,
    // Its warnings and errors through the process's JSON logger (secrets scrubbed), not its own console lines.
    log: { LoggerClass: ClickHouseLogger, level: ClickHouseLogLevel.WARN },
  });
}
