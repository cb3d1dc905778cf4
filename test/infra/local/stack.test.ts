import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { createStackContext, stackStatus, stackUp } from '../../../infra/local/stack.ts';
import { loadConfig } from '../../../runtime/config/index.ts';
import { ErrorCode } from '../../../runtime/errors.ts';
import { adminRedisUrl, config } from '../../support/stack.ts';
import { testStackKind } from '../../support/stack-kind.ts';

const root = join(import.meta.dirname, '../../..');

describe.runIf(testStackKind === 'local')('the local stack', () => {
  const ctx = createStackContext(config, root);

  it('reports every service healthy with its version and endpoint', async () => {
    const rows = await stackStatus(ctx);
    expect(rows.map((r) => [r.name, r.state])).toEqual([
      ['kafka', 'healthy'],
      ['registry', 'healthy'],
      ['redis', 'healthy'],
      ['clickhouse', 'healthy'],
    ]);
    const version = Object.fromEntries(rows.map((r) => [r.name, r.version]));
    expect(version.kafka).toMatch(/^4\.\d+\.\d+$/);
    expect(version.registry).toMatch(/^apicurio 3\./);
    expect(version.redis).toMatch(/^7\./);
    expect(version.clickhouse).toMatch(/^18\.16\./);
  });

  it('binds every server to 127.0.0.1 only', () => {
    const pids = new Set<string>();
    for (const service of ['kafka', 'registry', 'redis', 'clickhouse']) {
      pids.add(execFileSync('cat', [join(ctx.stackDir, service, `${service}.pid`)], { encoding: 'utf8' }).trim());
    }
    const listening = execFileSync('ss', ['-ltnpH'], { encoding: 'utf8' })
      .split('\n')
      .filter((line) => [...pids].some((pid) => line.includes(`pid=${pid},`)));
    expect(listening.length).toBeGreaterThanOrEqual(6);
    for (const line of listening) expect(line.split(/\s+/)[3]).toMatch(/^(\[::ffff:)?127\.0\.0\.1\]?:\d+$/);
  });

  it('is idempotent: up again starts nothing', async () => {
    const results = await stackUp(ctx);
    expect(results.map((r) => r.action)).toEqual([
      'already running',
      'already running',
      'already running',
      'already running',
    ]);
  });

  it('names the port and the setting when a port is taken by someone else', async () => {
    const other = createStackContext(
      loadConfig({
        env: {
          AS_STACK_DIR: join(ctx.stackDir, 'other'),
          AS_STACK_REDIS_PORT: String(config.stack.clickhouseHttpPort),
        },
      }),
      root,
    );
    const error = await stackUp(other, ['redis']).catch((e: unknown) => e);
    expect((error as { code: string }).code).toBe(ErrorCode.STACK_PORT_TAKEN);
    expect((error as Error).message).toContain(`port ${config.stack.clickhouseHttpPort}`);
    expect((error as Error).message).toContain('AS_STACK_REDIS_PORT');
  });

  it('runs Redis with append-only persistence and round-trips values', async () => {
    const redis = new Redis(adminRedisUrl()); // CONFIG is the administrator's, not the fleet user's
    try {
      expect(await redis.config('GET', 'appendonly')).toEqual(['appendonly', 'yes']);
      const key = `test:{p0}:${Date.now()}`;
      await redis.multi().hset(key, { count: '3', sum: '4.5' }).pexpire(key, 60_000).exec();
      expect(await redis.hgetall(key)).toEqual({ count: '3', sum: '4.5' });
      expect(await redis.pttl(key)).toBeGreaterThan(0);
    } finally {
      redis.disconnect();
    }
  });
});
