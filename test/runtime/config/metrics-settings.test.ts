/**
 * Where /metrics listens: loopback and a fixed port (9464) by default, the host and port from AS_METRICS_HOST and
 * AS_METRICS_PORT, and port 0 for members a local launcher starts side by side.
 */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../runtime/config/index.ts';
import { startObservabilityServer } from '../../../runtime/observability/server.ts';
import { createMetrics } from '../../../runtime/observability/metrics.ts';
import { startMember, stopMembers } from '../../../cli/fleet.ts';

describe('metrics settings', () => {
  it('default to 127.0.0.1:9464, and take AS_METRICS_HOST, AS_METRICS_PORT and AS_METRICS_LAG_INTERVAL_MS', () => {
    expect(loadConfig({ env: {} }).metrics).toEqual({ host: '127.0.0.1', port: 9464, lagIntervalMs: 10_000 });
    expect(
      loadConfig({ env: { AS_METRICS_HOST: '0.0.0.0', AS_METRICS_PORT: '9100', AS_METRICS_LAG_INTERVAL_MS: '500' } })
        .metrics,
    ).toEqual({
      host: '0.0.0.0',
      port: 9100,
      lagIntervalMs: 500,
    });
    expect(loadConfig({ env: { AS_METRICS_HOST: '[::1]' } }).metrics.host).toBe('::1');
    expect(() => loadConfig({ env: { AS_METRICS_HOST: 'a host' } })).toThrow(/AS_METRICS_HOST/);
    expect(() => loadConfig({ env: { AS_METRICS_PORT: '70000' } })).toThrow(/AS_METRICS_PORT/);
  });

  it('the server listens on the configured host', async () => {
    const { metrics } = loadConfig({ env: { AS_METRICS_PORT: '0', AS_METRICS_HOST: '127.0.0.1' } });
    const server = await startObservabilityServer({
      ...metrics,
      metrics: createMetrics({ processMetrics: false }),
      health: () => ({ healthy: true }),
      ready: () => true,
    });
    try {
      expect(server.host).toBe('127.0.0.1');
      expect((await fetch(`http://127.0.0.1:${server.port}/metrics`)).status).toBe(200);
    } finally {
      await server.close();
    }
  });

  it('a local launcher gives each member port 0 unless its caller names one', async () => {
    // `config` prints the effective configuration and exits: what the member would listen on.
    const portOf = async (env: Record<string, string>): Promise<number> => {
      const member = startMember('', 'config', env, { command: ['config'] });
      let out = '';
      member.child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
      await new Promise<void>((resolve) => member.child.once('close', () => resolve()));
      await stopMembers([member]);
      return (JSON.parse(out) as { metrics: { port: number } }).metrics.port;
    };
    expect(await portOf({})).toBe(0);
    expect(await portOf({ AS_METRICS_PORT: '9555' })).toBe(9555);
  }, 60_000);
});
