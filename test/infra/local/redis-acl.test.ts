/**
 * Redis ACL of the local stack: the fleet connects as the user of AS_REDIS_URL, which reaches only the project's
 * keys and no admin or dangerous command; `default` needs AS_STACK_REDIS_ADMIN_PASSWORD. `stack up` applies the ACL
 * to a running server (ACL SETUSER), and a server it starts has it from its first second (an ACL file).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { createStackContext, stackDown, stackProvision, stackStatus, stackUp } from '../../../infra/local/stack.ts';
import type { Config } from '../../../runtime/config/index.ts';
import { adminRedisUrl, config } from '../../support/stack.ts';
import { freePort } from '../../support/private-broker.ts';

const root = resolve(import.meta.dirname, '../../..');

/** The reply to one command, or the error message. */
async function reply(url: string, ...command: [string, ...Array<string | number>]): Promise<unknown> {
  // No ready check (it would send INFO before the command), no retries: the server's own answer is the result.
  const redis = new Redis(url, {
    lazyConnect: true,
    enableReadyCheck: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  const errors: string[] = [];
  redis.on('error', (error: Error) => errors.push(error.message));
  try {
    await redis.connect();
    return await redis.call(...command);
  } catch (error) {
    // A refused AUTH closes the connection; the reason came as an error event.
    return errors.find((m) => /WRONGPASS|NOAUTH|NOPERM/.test(m)) ?? (error as Error).message;
  } finally {
    redis.disconnect();
  }
}

describe('Redis ACL (local stack)', () => {
  it('the fleet user works on as:* keys, with scripts, and is refused other keys and admin commands', async () => {
    const key = `as:acl-test:{${randomBytes(4).toString('hex')}}`;
    expect(await reply(config.redis.url, 'SET', key, '1', 'PX', '60000')).toBe('OK');
    expect(await reply(config.redis.url, 'EVAL', "redis.call('TIME') return redis.call('INCR', KEYS[1])", 1, key)).toBe(
      2,
    );
    expect(await reply(config.redis.url, 'SET', 'elsewhere', '1')).toMatch(/^NOPERM .*keys/);
    for (const command of [
      ['FLUSHALL'],
      ['CONFIG', 'GET', 'appendonly'],
      ['ACL', 'LIST'],
      ['SHUTDOWN'],
      ['REPLICAOF', 'NO', 'ONE'],
      ['MIGRATE', '127.0.0.1', '1', 'k', '0', '1'],
    ] as Array<[string, ...string[]]>) {
      expect(await reply(config.redis.url, ...command)).toMatch(/^NOPERM /);
    }
  });

  it('the default user needs the admin password', async () => {
    expect(await reply(`redis://127.0.0.1:${config.stack.redisPort}`, 'PING')).toMatch(/NOAUTH/);
    expect(await reply(`redis://default:wrong@127.0.0.1:${config.stack.redisPort}`, 'PING')).toMatch(/WRONGPASS/);
    expect(await reply(adminRedisUrl(), 'CONFIG', 'GET', 'appendonly')).toEqual(['appendonly', 'yes']);
  });

  it('stack up gives a running server the user of AS_REDIS_URL, and status stays healthy', async () => {
    const name = `acl-test-${randomBytes(3).toString('hex')}`;
    const url = `redis://${name}:${randomBytes(9).toString('hex')}@127.0.0.1:${config.stack.redisPort}`;
    const ctx = createStackContext({ ...config, redis: { url } }, root);
    expect(await reply(url, 'PING')).toMatch(/WRONGPASS/);
    try {
      await stackProvision(ctx, ['redis']);
      expect(await reply(url, 'PING')).toBe('PONG');
      expect(await reply(url, 'FLUSHALL')).toMatch(/^NOPERM /);
      expect((await stackStatus(ctx, ['redis']))[0]).toMatchObject({
        state: 'healthy',
        endpoint: `redis://${name}:***@127.0.0.1:${config.stack.redisPort}`,
      });
    } finally {
      await reply(adminRedisUrl(), 'ACL', 'DELUSER', name);
    }
  });

  it('a server the stack starts has the ACL from its ACL file', async () => {
    const redisPort = await freePort();
    const own: Config = {
      ...config,
      redis: { url: `redis://agent-streams:fleet-pw@127.0.0.1:${redisPort}` },
      stack: {
        ...config.stack,
        dir: `.stack/redis-acl-${Date.now().toString(36)}`,
        redisPort,
        redisAdminPassword: 'admin-pw',
      },
    };
    const ctx = createStackContext(own, root);
    try {
      await stackUp(ctx, ['redis']);
      const file = readFileSync(resolve(ctx.serviceDir('redis'), 'users.acl'), 'utf8');
      expect(file).toMatch(/^user default on #[0-9a-f]{64} ~\* &\* \+@all$/m);
      expect(file).toMatch(
        /^user agent-streams on #[0-9a-f]{64} resetkeys ~as:\* ~smoke:\* resetchannels \+@all -@admin -@dangerous \+info \+keys$/m,
      );
      expect(file).not.toContain('fleet-pw');
      expect(await reply(`redis://127.0.0.1:${redisPort}`, 'PING')).toMatch(/NOAUTH/);
      expect(await reply(own.redis.url, 'SET', 'as:k', '1')).toBe('OK');
      expect(await reply(`redis://default:admin-pw@127.0.0.1:${redisPort}`, 'ACL', 'WHOAMI')).toBe('default');
    } finally {
      await stackDown(ctx, ['redis']);
      rmSync(ctx.stackDir, { recursive: true, force: true });
    }
  });
});
