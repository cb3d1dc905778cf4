import { afterEach, describe, expect, it } from 'vitest';
import { AgentStreamsError, ErrorCode } from '../../../runtime/errors.ts';
import { createMetrics } from '../../../runtime/observability/metrics.ts';
import {
  startObservabilityServer,
  type HealthReport,
  type ObservabilityServer,
} from '../../../runtime/observability/server.ts';

const servers: ObservabilityServer[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

async function start(overrides: { health?: () => HealthReport; ready?: () => boolean | Promise<boolean> } = {}) {
  const metrics = createMetrics({ processMetrics: false });
  const server = await startObservabilityServer({
    port: 0,
    metrics,
    health: overrides.health ?? (() => ({ healthy: true })),
    ready: overrides.ready ?? (() => true),
  });
  servers.push(server);
  return { metrics, server, url: (path: string) => `http://127.0.0.1:${server.port}${path}` };
}

describe('startObservabilityServer', () => {
  it('binds to loopback on a free port and serves metrics in the Prometheus text format', async () => {
    const { metrics, server, url } = await start();
    expect(server.host).toBe('127.0.0.1');
    expect(server.port).toBeGreaterThan(0);
    metrics.recordsConsumed.inc({ processor: 'enrich', topic: 'trades', partition: String(2) }, 7);

    const response = await fetch(url('/metrics'));
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(await response.text()).toContain(
      'agent_streams_records_consumed_total{processor="enrich",topic="trades",partition="2"} 7',
    );
  });

  it('answers /healthz 200 when healthy and 503 with the failing checks otherwise', async () => {
    let report: HealthReport = { healthy: true, checks: { kafka: { healthy: true } } };
    const { url } = await start({ health: () => report });

    const ok = await fetch(url('/healthz'));
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await ok.json()).toMatchObject({ status: 'ok' });

    report = {
      healthy: false,
      checks: { kafka: { healthy: true }, redis: { healthy: false, detail: 'connection refused' } },
    };
    const bad = await fetch(url('/healthz'));
    expect(bad.status).toBe(503);
    expect(await bad.json()).toMatchObject({ status: 'unhealthy', reason: 'redis: connection refused' });
  });

  it('flips /readyz from 503 to 200 when the runtime becomes ready', async () => {
    let ready = false;
    const { url } = await start({ ready: async () => ready });
    expect((await fetch(url('/readyz'))).status).toBe(503);
    ready = true;
    const response = await fetch(url('/readyz'));
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: 'ready' });
  });

  it('reports a throwing probe as 503 rather than crashing', async () => {
    const { url } = await start({
      ready: () => {
        throw new Error('not wired yet');
      },
    });
    const response = await fetch(url('/readyz'));
    expect(response.status).toBe(503);
    expect(await response.json()).toMatchObject({ reason: 'readiness check threw: not wired yet' });
  });

  it('answers 404 for unknown paths and 405 for other methods', async () => {
    const { url } = await start();
    expect((await fetch(url('/nope'))).status).toBe(404);
    const post = await fetch(url('/metrics'), { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    expect((await fetch(url('/healthz'), { method: 'DELETE' })).status).toBe(405);
    expect((await fetch(url('/metrics?debug=1'))).status).toBe(200);
  });

  it('closes idempotently and stops listening', async () => {
    const { server, url } = await start();
    await fetch(url('/healthz'));
    await server.close();
    await server.close();
    await expect(fetch(url('/healthz'))).rejects.toThrow();
  });

  it('fails clearly when the port is taken', async () => {
    const { server } = await start();
    const error = await startObservabilityServer({
      port: server.port,
      metrics: createMetrics({ processMetrics: false }),
      health: () => ({ healthy: true }),
      ready: () => true,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AgentStreamsError);
    expect((error as AgentStreamsError).code).toBe(ErrorCode.OBSERVABILITY_LISTEN_FAILED);
    expect((error as AgentStreamsError).message).toContain('EADDRINUSE');
  });
});
