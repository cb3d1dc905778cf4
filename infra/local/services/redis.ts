/**
 * Debian's redis-server on its own port, with AOF persistence so window state survives a Redis restart, and ACL
 * users: `default` is the administrator and needs AS_STACK_REDIS_ADMIN_PASSWORD; the fleet connects as the user of
 * AS_REDIS_URL, which may only run data and scripting commands on the project's keys (`as:*`, and `smoke:*` of the
 * smoke run) — no FLUSHALL, CONFIG, DEBUG, SHUTDOWN, ACL or other admin and dangerous commands.
 *
 * The users are in an ACL file the server starts with, and `stack up` also applies them with ACL SETUSER to a
 * server that is already running (one started before the ACL existed, or after a password changed).
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { Config } from '../../../runtime/config/index.ts';
import { hostTools } from '../tools.ts';
import type { LocalService, StackContext } from '../service.ts';

/**
 * What the fleet's user may do: every command but the admin and dangerous ones, on the project's keys only; back are
 * INFO (the client's ready check) and KEYS (inside scripts that rebuild a partition's keys).
 */
export const fleetRedisRules = [
  'resetkeys',
  '~as:*',
  '~smoke:*',
  'resetchannels',
  '+@all',
  '-@admin',
  '-@dangerous',
  '+info',
  '+keys',
];

/** The fleet's user and password, from AS_REDIS_URL; none when the URL names no user (or the default user). */
export function fleetRedisUser(config: Config): { name: string; password: string } | undefined {
  const url = new URL(config.redis.url);
  const name = decodeURIComponent(url.username);
  if (name === '' || name === 'default') return undefined;
  return { name, password: decodeURIComponent(url.password) };
}

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

/** The ACL rules of each user, as ACL SETUSER and the ACL file take them. */
function aclUsers(config: Config): Array<{ name: string; rules: string[] }> {
  const fleet = fleetRedisUser(config);
  return [
    { name: 'default', rules: ['on', 'resetpass', `#${sha256(config.stack.redisAdminPassword)}`, '~*', '&*', '+@all'] },
    ...(fleet
      ? [{ name: fleet.name, rules: ['on', 'resetpass', `#${sha256(fleet.password)}`, ...fleetRedisRules] }]
      : []),
  ];
}

/** The stack's own connection: the administrator (a server without ACL yet accepts any password for `default`). */
export async function withAdminRedis<T>(ctx: StackContext, use: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis({
    host: '127.0.0.1',
    port: ctx.config.stack.redisPort,
    username: 'default',
    password: ctx.config.stack.redisAdminPassword,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 1000,
  });
  redis.on('error', () => {});
  try {
    await redis.connect();
    return await use(redis);
  } finally {
    redis.disconnect();
  }
}

const aclFile = (ctx: StackContext): string => join(ctx.serviceDir('redis'), 'users.acl');

export const redisService: LocalService = {
  name: 'redis',
  tools: [hostTools.redis],
  ports: (ctx) => [{ port: ctx.config.stack.redisPort, env: 'AS_STACK_REDIS_PORT' }],
  async prepare(ctx) {
    // Password hashes only; readable by the stack's user alone.
    writeFileSync(
      aclFile(ctx),
      aclUsers(ctx.config)
        .map((u) => `user ${u.name} ${u.rules.filter((r) => r !== 'resetpass').join(' ')}\n`)
        .join(''),
      { mode: 0o600 },
    );
  },
  launch(ctx) {
    const dir = ctx.serviceDir('redis');
    return {
      command: 'redis-server',
      args: [
        '--bind',
        '127.0.0.1',
        '--port',
        String(ctx.config.stack.redisPort),
        '--dir',
        dir,
        '--daemonize',
        'no',
        '--protected-mode',
        'yes',
        '--appendonly',
        'yes',
        '--appendfsync',
        'everysec',
        '--save',
        '',
        '--logfile',
        '',
        '--aclfile',
        aclFile(ctx),
      ],
      cwd: dir,
    };
  },
  async provision(ctx) {
    await withAdminRedis(ctx, async (redis) => {
      // The fleet's user first: the default user's new password would otherwise be the only way in.
      for (const user of aclUsers(ctx.config).reverse()) await redis.call('ACL', 'SETUSER', user.name, ...user.rules);
    });
    const fleet = fleetRedisUser(ctx.config);
    ctx.log(
      `redis: ACL users default (AS_STACK_REDIS_ADMIN_PASSWORD)${fleet ? ` and ${fleet.name} (AS_REDIS_URL)` : ''}`,
    );
  },
  ready: (ctx) => withAdminRedis(ctx, async (redis) => (await redis.ping()) === 'PONG'),
  version: (ctx) =>
    withAdminRedis(ctx, async (redis) => {
      const info = await redis.info('server');
      return /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
    }),
  endpoint: (ctx) => ctx.config.redis.url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@'),
};
