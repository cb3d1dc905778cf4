/** Debian's redis-server on its own port, with AOF persistence so window state survives a Redis restart. */
import { Redis } from 'ioredis';
import { hostTools } from '../tools.ts';
import type { LocalService, StackContext } from '../service.ts';

async function withRedis<T>(ctx: StackContext, use: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis({
    host: '127.0.0.1',
    port: ctx.config.stack.redisPort,
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

export const redisService: LocalService = {
  name: 'redis',
  tools: [hostTools.redis],
  ports: (ctx) => [{ port: ctx.config.stack.redisPort, env: 'AS_STACK_REDIS_PORT' }],
  async prepare() {},
  launch(ctx) {
    const dir = ctx.serviceDir('redis');
    return {
      command: 'redis-server',
      args: [
        '--bind', '127.0.0.1',
        '--port', String(ctx.config.stack.redisPort),
        '--dir', dir,
        '--daemonize', 'no',
        '--protected-mode', 'yes',
        '--appendonly', 'yes',
        '--appendfsync', 'everysec',
        '--save', '',
        '--logfile', '',
      ],
      cwd: dir,
    };
  },
  ready: (ctx) => withRedis(ctx, async (redis) => (await redis.ping()) === 'PONG'),
  version: (ctx) =>
    withRedis(ctx, async (redis) => {
      const info = await redis.info('server');
      return /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
    }),
  endpoint: (ctx) => ctx.config.redis.url,
};
