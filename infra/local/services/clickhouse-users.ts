/**
 * The fleet's least-privilege ClickHouse users on the local 18.16 server, which has no SQL access control (no
 * CREATE USER / GRANT; infra/clickhouse/users.sql is the equivalent for current ClickHouse). They live in
 * `etc/users.d/<name>.xml`, which the server reloads by itself within seconds, so a running server gets them too:
 * - the sink user: readonly=0 (INSERT) with allow_ddl=0 (no CREATE, ALTER, DROP, TRUNCATE), only the fleet's database;
 * - the reader user: readonly=1 (SELECT only, and no setting may change), only the fleet's database. Its profile
 *   holds the output setting our client sends with every query (output_format_json_quote_64bit_integers=0): under
 *   readonly=1 a query may only restate a setting's value, never change it.
 * 18.16 cannot narrow the sink to INSERT on named tables: it may also SELECT and insert into any table of the database.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface ClickHouseUser {
  name: string;
  password: string;
}

export interface FleetClickHouseUsers {
  database: string;
  sink?: ClickHouseUser;
  reader?: ClickHouseUser;
}

const escapeXml = (text: string): string => text.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);

function userXml(user: ClickHouseUser, profile: string, database: string): string {
  return [
    `    <${user.name}>`,
    `      <password_sha256_hex>${createHash('sha256').update(user.password).digest('hex')}</password_sha256_hex>`,
    '      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>',
    `      <profile>${profile}</profile>`,
    '      <quota>default</quota>',
    `      <allow_databases><database>${escapeXml(database)}</database></allow_databases>`,
    `    </${user.name}>`,
  ].join('\n');
}

/** The users.d document for one fleet database. */
export function fleetUsersXml(users: FleetClickHouseUsers): string {
  for (const user of [users.sink, users.reader]) {
    if (user && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(user.name))
      throw new Error(`ClickHouse user name "${user.name}" must be an identifier ([A-Za-z_][A-Za-z0-9_]*)`);
  }
  return [
    '<?xml version="1.0"?>',
    `<!-- Written by agent-streams for database ${escapeXml(users.database)}: the fleet's sink and reader users. -->`,
    '<yandex>',
    '  <profiles>',
    '    <agent_streams_sink><readonly>0</readonly><allow_ddl>0</allow_ddl></agent_streams_sink>',
    // Keep in step with the clickhouse_settings of sinks/clickhouse/client.ts (wait_end_of_query is an HTTP parameter, not a setting).
    '    <agent_streams_reader><readonly>1</readonly><output_format_json_quote_64bit_integers>0</output_format_json_quote_64bit_integers></agent_streams_reader>',
    '  </profiles>',
    '  <users>',
    ...(users.sink ? [userXml(users.sink, 'agent_streams_sink', users.database)] : []),
    ...(users.reader ? [userXml(users.reader, 'agent_streams_reader', users.database)] : []),
    '  </users>',
    '</yandex>',
    '',
  ].join('\n');
}

const usersFile = (clickhouseDir: string, name: string): string => join(clickhouseDir, 'etc', 'users.d', `${name}.xml`);

/** Writes (or replaces) `users.d/<name>.xml` in the stack's ClickHouse folder; the server picks it up by itself. */
export function writeFleetUsers(clickhouseDir: string, name: string, users: FleetClickHouseUsers): string {
  const file = usersFile(clickhouseDir, name);
  mkdirSync(join(clickhouseDir, 'etc', 'users.d'), { recursive: true });
  writeFileSync(file, fleetUsersXml(users), { mode: 0o600 });
  return file;
}

export function removeFleetUsers(clickhouseDir: string, name: string): void {
  rmSync(usersFile(clickhouseDir, name), { force: true });
}
