/**
 * /metrics, /healthz and /readyz for one runtime process. Plain node:http keeps the scrape path free of framework
 * code, and binding to loopback by default means metrics are never exposed off-host by accident.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import { AgentStreamsError, ErrorCode } from '../errors.ts';
import type { Metrics } from './metrics.ts';

export interface HealthCheck {
  readonly healthy: boolean;
  /** Why it is unhealthy (or useful context when healthy). */
  readonly detail?: string;
}

export interface HealthReport {
  readonly healthy: boolean;
  readonly checks?: Readonly<Record<string, HealthCheck>>;
}

export interface ObservabilityServerOptions {
  /** 0 picks a free port; read the chosen one from the result. */
  port: number;
  host?: string;
  metrics: { readonly registry: Registry };
  health: () => HealthReport | Promise<HealthReport>;
  ready: () => boolean | Promise<boolean>;
}

export interface ObservabilityServer {
  readonly port: number;
  readonly host: string;
  close(): Promise<void>;
}

type Reply = { status: number; contentType: string; body: string; headers?: Record<string, string> };

const JSON_TYPE = 'application/json; charset=utf-8';
const TEXT_TYPE = 'text/plain; charset=utf-8';

function json(status: number, value: unknown): Reply {
  return { status, contentType: JSON_TYPE, body: `${JSON.stringify(value)}\n` };
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export function startObservabilityServer(options: ObservabilityServerOptions): Promise<ObservabilityServer> {
  const { port, host = '127.0.0.1', metrics, health, ready } = options;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    return Promise.reject(
      new AgentStreamsError(
        ErrorCode.OBSERVABILITY_LISTEN_FAILED,
        `Observability port must be a whole number from 0 to 65535, got ${port}.`,
      ),
    );
  }

  const routes: Record<string, () => Promise<Reply>> = {
    '/metrics': async () => ({
      status: 200,
      contentType: metrics.registry.contentType,
      body: await metrics.registry.metrics(),
    }),
    '/healthz': async () => {
      let report: HealthReport;
      try {
        report = await health();
      } catch (error) {
        return json(503, { status: 'unhealthy', reason: `health check threw: ${messageOf(error)}` });
      }
      const failing = Object.entries(report.checks ?? {})
        .filter(([, check]) => !check.healthy)
        .map(([name, check]) => (check.detail ? `${name}: ${check.detail}` : name));
      if (report.healthy) return json(200, { status: 'ok', checks: report.checks ?? {} });
      return json(503, {
        status: 'unhealthy',
        reason: failing.length > 0 ? failing.join('; ') : 'reported unhealthy',
        checks: report.checks ?? {},
      });
    },
    '/readyz': async () => {
      try {
        return (await ready()) ? json(200, { status: 'ready' }) : json(503, { status: 'not ready' });
      } catch (error) {
        return json(503, { status: 'not ready', reason: `readiness check threw: ${messageOf(error)}` });
      }
    },
  };

  async function route(request: IncomingMessage): Promise<Reply> {
    const path = new URL(request.url ?? '/', 'http://localhost').pathname;
    const handler = Object.hasOwn(routes, path) ? routes[path] : undefined;
    if (!handler)
      return { status: 404, contentType: TEXT_TYPE, body: `Not found: ${path}. Try /metrics, /healthz or /readyz.\n` };
    // HEAD is answered like GET without a body, as HTTP requires of any server that supports GET.
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      return {
        status: 405,
        contentType: TEXT_TYPE,
        body: `Method ${request.method} not allowed; use GET.\n`,
        headers: { allow: 'GET, HEAD' },
      };
    }
    return handler();
  }

  function respond(request: IncomingMessage, response: ServerResponse, reply: Reply): void {
    response.writeHead(reply.status, {
      'content-type': reply.contentType,
      'content-length': Buffer.byteLength(reply.body),
      'cache-control': 'no-store',
      ...reply.headers,
    });
    response.end(request.method === 'HEAD' ? undefined : reply.body);
  }

  const server = createServer((request, response) => {
    route(request).then(
      (reply) => respond(request, response, reply),
      (error: unknown) =>
        respond(request, response, {
          status: 500,
          contentType: TEXT_TYPE,
          body: `Internal error: ${messageOf(error)}\n`,
        }),
    );
  });

  return new Promise((resolve, reject) => {
    const onListenError = (error: NodeJS.ErrnoException): void => {
      reject(
        new AgentStreamsError(
          ErrorCode.OBSERVABILITY_LISTEN_FAILED,
          `Could not start the observability server on ${host}:${port} (${error.code ?? error.message}). ` +
            'Choose another port with AS_METRICS_PORT, or 0 to pick a free one.',
          { details: { host, port }, cause: error },
        ),
      );
    };
    server.once('error', onListenError);
    server.listen(port, host, () => {
      server.off('error', onListenError);
      const address = server.address();
      let closing: Promise<void> | undefined;
      resolve({
        port: typeof address === 'object' && address !== null ? address.port : port,
        host,
        close: () => {
          closing ??= new Promise<void>((done, fail) => {
            server.close((error) => (error ? fail(error) : done()));
            // Keep-alive scrapers would otherwise hold close() open until their sockets time out.
            server.closeIdleConnections();
          });
          return closing;
        },
      });
    });
  });
}

/** What `serveMember` needs of a running member (a processor's `ProcessorHandle`, the sink's handle). */
export interface ServedMember {
  health(): { readonly live: boolean; readonly ready: boolean; readonly problems: readonly string[] };
}

export interface ServeMemberOptions {
  /** The member's name in the `member_ready` / `member_live` gauges (a processor's name, or the sink's). */
  name: string;
  /** The check's name in /healthz (`member` for a processor, `sink` for the ClickHouse sink). */
  check: string;
  member: ServedMember;
  metrics: Metrics;
  /** config.metrics: where /metrics, /healthz and /readyz listen. */
  listen: { readonly port: number; readonly host: string };
}

/**
 * The observability server of one running member, as `run` and `sink` start it: the member's `member_ready` and
 * `member_live` gauges sampled from its health at each scrape; /healthz live while the member is live (its problems
 * as the detail when not); /readyz ready while it is joined and not rebalancing.
 */
export function serveMember(options: ServeMemberOptions): Promise<ObservabilityServer> {
  const { name, check, member, metrics, listen } = options;
  metrics.memberReady.sampleWith(() => metrics.memberReady.set({ processor: name }, member.health().ready ? 1 : 0));
  metrics.memberLive.sampleWith(() => metrics.memberLive.set({ processor: name }, member.health().live ? 1 : 0));
  return startObservabilityServer({
    port: listen.port,
    host: listen.host,
    metrics,
    health: () => {
      const { live, problems } = member.health();
      return { healthy: live, checks: { [check]: { healthy: live, detail: problems.join('; ') || 'ok' } } };
    },
    ready: () => member.health().ready,
  });
}
