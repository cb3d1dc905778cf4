/** Debian's clickhouse-server (18.16) as a plain process with a config we own, on loopback only. */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { hostTools } from '../tools.ts';
import { renderTemplate } from '../templates.ts';
import type { LocalService, StackContext } from '../service.ts';
import { writeFleetUsers } from './clickhouse-users.ts';

async function get(ctx: StackContext, path: string): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${ctx.config.stack.clickhouseHttpPort}${path}`, {
    signal: AbortSignal.timeout(2000),
  });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return response.text();
}

export const clickhouseService: LocalService = {
  name: 'clickhouse',
  tools: [hostTools.clickhouse],
  ports: (ctx) => [
    { port: ctx.config.stack.clickhouseHttpPort, env: 'AS_STACK_CLICKHOUSE_HTTP_PORT' },
    { port: ctx.config.stack.clickhouseTcpPort, env: 'AS_STACK_CLICKHOUSE_TCP_PORT' },
  ],
  async prepare(ctx) {
    const dir = ctx.serviceDir('clickhouse');
    for (const sub of ['etc', 'logs', 'tmp', 'user_files', 'format_schemas'])
      mkdirSync(join(dir, sub), { recursive: true });
    const values = {
      HTTP_PORT: ctx.config.stack.clickhouseHttpPort,
      TCP_PORT: ctx.config.stack.clickhouseTcpPort,
      DATA_DIR: dir,
    };
    const templates = join(ctx.root, 'infra/local/clickhouse');
    renderTemplate(join(templates, 'config.xml.template'), join(dir, 'etc/config.xml'), values);
    renderTemplate(join(templates, 'users.xml.template'), join(dir, 'etc/users.xml'), values);
  },
  async provision(ctx) {
    // The fleet's least-privilege users, when the configuration names them (AS_CLICKHOUSE_SINK_USER, AS_CLICKHOUSE_READER_USER).
    const { database, sinkUser, sinkPassword, readerUser, readerPassword } = ctx.config.clickhouse;
    if (sinkUser === '' && readerUser === '') return;
    const file = writeFleetUsers(ctx.serviceDir('clickhouse'), 'agent-streams', {
      database,
      ...(sinkUser ? { sink: { name: sinkUser, password: sinkPassword } } : {}),
      ...(readerUser ? { reader: { name: readerUser, password: readerPassword } } : {}),
    });
    ctx.log(
      `clickhouse: users ${[sinkUser, readerUser].filter(Boolean).join(', ')} of database ${database} in ${file}`,
    );
  },
  launch(ctx) {
    const dir = ctx.serviceDir('clickhouse');
    return { command: 'clickhouse-server', args: [`--config-file=${join(dir, 'etc/config.xml')}`], cwd: dir };
  },
  ready: async (ctx) => (await get(ctx, '/ping')).trim() === 'Ok.',
  version: async (ctx) => (await get(ctx, `/?query=${encodeURIComponent('SELECT version()')}`)).trim(),
  endpoint: (ctx) => ctx.config.clickhouse.url,
};
