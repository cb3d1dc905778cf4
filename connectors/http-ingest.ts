/**
 * The HTTP ingest gateway: outside systems POST market events as JSON; valid ones become Avro records in
 * `market.events`, keyed by symbol.
 *
 *   POST /v1/events/{PriceTick|Trade|NewsItem|Filing}   one JSON object, or an array of up to maxEventsPerRequest
 *   GET  /healthz
 *
 * A request is all or nothing: it is authenticated, rate-limited, parsed and validated completely before anything
 * is produced, so a rejected request leaves no trace in Kafka; and its records are produced in one transaction (the
 * producer must be opened with `transactional`), so a request that fails half-way leaves none visible to
 * read_committed readers and a client's retry duplicates nothing. Accepted requests get 202 once the transaction
 * committed. Concurrent requests share transactions (see market-producer.ts), so many small posts do not mean many
 * round trips; a shared transaction commits or aborts for all of them.
 *
 * While Kafka is away the gateway answers 503 with Retry-After at once (nothing of the request committed); when
 * the outage outlasts kafka.outageToleranceMs the producer fails and the CLI exits. 5xx bodies never carry internal
 * error text: it is logged with an error id that the body names.
 *
 * Errors are JSON: {"error": {"code": "AS_…", "message": "…", "details": {…}}}.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Message } from 'kafkajs';
import { AgentStreamsError, ErrorCode, isAgentStreamsError } from '../runtime/errors.ts';
import { describeJsonError, parseJson } from './json-text.ts';
import { marketRecordName, marketRecordNames, type FieldProblem } from './market-records.ts';
import type { MarketProducer } from './market-producer.ts';
import { context, traceHttpServer } from '../runtime/observability/tracing.ts';
import type { Metrics } from '../runtime/observability/metrics.ts';

export interface IngestGatewayOptions {
  /** Where records go; the caller opens and closes it. */
  producer: MarketProducer;
  /** Accepted API keys (at least one; each at least 16 characters). */
  apiKeys: readonly string[];
  /** Default 18090; 0 picks a free port. */
  port?: number;
  /** Default 127.0.0.1: put a TLS-terminating proxy in front before exposing it. */
  host?: string;
  /** Sustained Kafka records per second per API key (a story about n symbols is n records). Default 1000. */
  ratePerSecond?: number;
  /** Records a key may send at once after being idle (the bucket size). Default 2 × ratePerSecond, at least maxEventsPerRequest. */
  burst?: number;
  /** Largest request body. Default 1 MiB. */
  maxBodyBytes?: number;
  /** Most events in one request. Default 1000. */
  maxEventsPerRequest?: number;
  /** Most symbols in one NewsItem (each symbol is a Kafka record). Default 20; more is refused with 400. */
  maxSymbolsPerStory?: number;
  /** Requests validated and waiting for Kafka at once; beyond it the answer is 503 with Retry-After. Default 64. */
  maxPendingRequests?: number;
  /** Open connections at once (server.maxConnections); more are refused by the server. Default 256. */
  maxConnections?: number;
  /** Clock for the rate limiter (ms); injectable for tests. */
  now?: () => number;
  log?: (event: string, fields: Record<string, unknown>) => void;
  /** Requests by status and accepted events, for /metrics. */
  metrics?: Pick<Metrics, 'ingestRequests' | 'ingestEvents'>;
}

export interface IngestStats {
  requests: number;
  /** Requests answered 202. */
  accepted: number;
  /** Requests answered 4xx or 5xx. */
  rejected: number;
  /** Events in accepted requests. */
  events: number;
  /** Requests answered 503 because Kafka was unavailable or the send queue was full. */
  unavailable: number;
}

export interface IngestGateway {
  readonly port: number;
  readonly host: string;
  readonly url: string;
  readonly stats: Readonly<IngestStats>;
  /** Stops accepting connections and waits for requests in progress. Idempotent. */
  close(): Promise<void>;
}

export const DEFAULT_INGEST_PORT = 18090;
const MIN_KEY_LENGTH = 16;

/** Keys from `AS_INGEST_API_KEYS` (comma-separated). */
export function apiKeysFromEnv(env: NodeJS.ProcessEnv = process.env): string[] {
  return (env.AS_INGEST_API_KEYS ?? '')
    .split(',')
    .map((k) => k.trim())
    .filter((k) => k.length > 0);
}

/** A token bucket per API key, counted in Kafka records: a request that produces n records takes n tokens. */
export class TokenBucket {
  private tokens: number;
  private updated: number;

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.updated = now;
  }

  private refill(now: number): void {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.updated) / 1000) * this.ratePerSecond);
    this.updated = now;
  }

  /** Milliseconds until at least one token is available; 0 when one is. */
  waitMs(now: number): number {
    this.refill(now);
    return this.tokens >= 1 ? 0 : Math.ceil(((1 - this.tokens) / this.ratePerSecond) * 1000);
  }

  /** Takes `n` tokens, or says how long until there are enough (nothing is taken then). */
  take(n: number, now: number): { ok: true } | { ok: false; retryAfterMs: number } {
    this.refill(now);
    if (this.tokens >= n) {
      this.tokens -= n;
      return { ok: true };
    }
    return { ok: false, retryAfterMs: Math.ceil(((n - this.tokens) / this.ratePerSecond) * 1000) };
  }
}

interface Reply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
  /** Close the connection after replying (an unread body is not worth draining). */
  close?: boolean;
}

function errorReply(
  status: number,
  code: ErrorCode,
  message: string,
  details: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): Reply {
  return { status, body: { error: { code, message, details } }, headers };
}

function digest(key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest();
}

function invalidOption(message: string): AgentStreamsError {
  return new AgentStreamsError(ErrorCode.CONNECTOR_OPTIONS_INVALID, message);
}

export function startIngestGateway(options: IngestGatewayOptions): Promise<IngestGateway> {
  const { producer } = options;
  const port = options.port ?? DEFAULT_INGEST_PORT;
  const host = options.host ?? '127.0.0.1';
  const ratePerSecond = options.ratePerSecond ?? 1000;
  const maxEventsPerRequest = options.maxEventsPerRequest ?? 1000;
  const burst = options.burst ?? Math.max(2 * ratePerSecond, maxEventsPerRequest);
  const maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024;
  const maxSymbolsPerStory = options.maxSymbolsPerStory ?? 20;
  const maxPendingRequests = options.maxPendingRequests ?? 64;
  const maxConnections = options.maxConnections ?? 256;
  const now = options.now ?? (() => performance.timeOrigin + performance.now());
  const log = options.log ?? (() => {});

  const problems: string[] = [];
  if (options.apiKeys.length === 0)
    problems.push('no API keys: set AS_INGEST_API_KEYS=key1,key2 (the gateway never runs unauthenticated)');
  if (options.apiKeys.some((k) => k.length < MIN_KEY_LENGTH))
    problems.push(`every API key needs at least ${MIN_KEY_LENGTH} characters (e.g. \`openssl rand -hex 24\`)`);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    problems.push(`port must be a whole number from 0 to 65535, got ${port}`);
  if (!(ratePerSecond > 0 && Number.isFinite(ratePerSecond)))
    problems.push(`ratePerSecond must be > 0, got ${ratePerSecond}`);
  if (!Number.isInteger(maxEventsPerRequest) || maxEventsPerRequest < 1)
    problems.push(`maxEventsPerRequest must be a whole number >= 1, got ${maxEventsPerRequest}`);
  // A request larger than the bucket could never be admitted: refuse the configuration rather than the client.
  if (!(burst >= maxEventsPerRequest))
    problems.push(`burst (${burst}) must be at least maxEventsPerRequest (${maxEventsPerRequest})`);
  if (!Number.isInteger(maxBodyBytes) || maxBodyBytes < 1024)
    problems.push(`maxBodyBytes must be a whole number >= 1024, got ${maxBodyBytes}`);
  if (!Number.isInteger(maxSymbolsPerStory) || maxSymbolsPerStory < 1)
    problems.push(`maxSymbolsPerStory must be a whole number >= 1, got ${maxSymbolsPerStory}`);
  if (!Number.isInteger(maxPendingRequests) || maxPendingRequests < 1)
    problems.push(`maxPendingRequests must be a whole number >= 1, got ${maxPendingRequests}`);
  if (!Number.isInteger(maxConnections) || maxConnections < 1)
    problems.push(`maxConnections must be a whole number >= 1, got ${maxConnections}`);
  if (problems.length > 0)
    return Promise.reject(invalidOption(`Invalid ingest gateway options: ${problems.join('; ')}.`));

  const keyDigests = options.apiKeys.map(digest);
  const buckets = new Map<number, TokenBucket>();
  const stats: IngestStats = { requests: 0, accepted: 0, rejected: 0, events: 0, unavailable: 0 };
  /** Requests validated and waiting for Kafka. */
  let pending = 0;
  let errorIds = 0;

  const retryAfterSeconds = (): string => String(Math.max(1, Math.ceil(producer.retryAfterMs / 1000)));
  const unavailable = (reason: 'broker-unavailable' | 'queue-full', extra: Record<string, unknown> = {}): Reply => {
    stats.unavailable += 1;
    const message =
      reason === 'queue-full'
        ? `${maxPendingRequests} requests are already waiting for Kafka; nothing of this one was produced. Retry after ${retryAfterSeconds()} s.`
        : `Kafka is unavailable; nothing of this request was produced. Retry after ${retryAfterSeconds()} s.`;
    return errorReply(
      503,
      ErrorCode.INGEST_UNAVAILABLE,
      message,
      { reason, ...extra },
      { 'retry-after': retryAfterSeconds() },
    );
  };
  /** The detail goes to the log under an id; the client gets only the id. */
  const internalError = (error: unknown, event: string): Reply => {
    errorIds += 1;
    const errorId = `${Date.now().toString(36)}-${errorIds}`;
    log(event, {
      errorId,
      error: (error as Error)?.message ?? String(error),
      code: (error as { code?: string })?.code,
    });
    return errorReply(
      500,
      ErrorCode.INGEST_INTERNAL,
      `Internal error (id ${errorId}); nothing of this request was produced unless the log says otherwise.`,
      { errorId },
    );
  };
  /** Kafka records an event becomes (one per distinct symbol of a story), for the rate limit. */
  const recordsOf = (type: string, event: unknown): number => {
    if (type !== 'NewsItem' || event === null || typeof event !== 'object') return 1;
    const symbols = (event as { symbols?: unknown }).symbols;
    return Array.isArray(symbols) ? Math.max(1, new Set(symbols.slice(0, maxSymbolsPerStory + 1).map(String)).size) : 1;
  };

  /** Index of the key presented, comparing against every key in constant time (no early exit, equal lengths). */
  const keyIndex = (presented: string): number | undefined => {
    const d = digest(presented);
    let found = -1;
    keyDigests.forEach((k, i) => {
      if (timingSafeEqual(d, k) && found < 0) found = i;
    });
    return found >= 0 ? found : undefined;
  };

  /** The key presented; '' for a malformed Authorization header (refused as invalid); undefined for none at all. */
  const presentedKey = (request: IncomingMessage): string | undefined => {
    const authorization = request.headers.authorization?.trim();
    if (authorization) {
      const match = /^Bearer\s+(\S+)$/i.exec(authorization);
      return match ? match[1] : '';
    }
    const header = request.headers['x-api-key'];
    return typeof header === 'string' && header.trim() !== '' ? header.trim() : undefined;
  };

  const readBody = (request: IncomingMessage): Promise<Buffer | 'too-large'> =>
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let over = false;
      request.on('data', (chunk: Buffer) => {
        if (over) return;
        size += chunk.length;
        if (size > maxBodyBytes) {
          over = true;
          chunks.length = 0;
          resolve('too-large');
          return;
        }
        chunks.push(chunk);
      });
      request.on('end', () => {
        if (!over) resolve(Buffer.concat(chunks, size));
      });
      request.on('error', reject);
    });

  const tooLarge = (): Reply => ({
    ...errorReply(
      413,
      ErrorCode.INGEST_PAYLOAD_TOO_LARGE,
      `Request body is larger than ${maxBodyBytes} bytes; split it into smaller requests.`,
      { maxBodyBytes },
    ),
    close: true,
  });

  async function handleEvents(request: IncomingMessage, typeSegment: string): Promise<Reply> {
    // Authentication first: an unauthenticated caller learns nothing else about the request.
    const presented = presentedKey(request);
    if (presented === undefined) {
      return errorReply(
        401,
        ErrorCode.INGEST_UNAUTHENTICATED,
        'Missing API key: send `authorization: Bearer <key>` or `x-api-key: <key>`.',
        { reason: 'missing' },
        { 'www-authenticate': 'Bearer realm="agent-streams-ingest"' },
      );
    }
    const key = keyIndex(presented);
    if (key === undefined) {
      return errorReply(
        401,
        ErrorCode.INGEST_UNAUTHENTICATED,
        'The API key is not valid.',
        { reason: 'invalid' },
        { 'www-authenticate': 'Bearer realm="agent-streams-ingest", error="invalid_token"' },
      );
    }
    let segment = typeSegment;
    try {
      segment = decodeURIComponent(typeSegment);
    } catch {
      // Malformed escapes: left as they are, and reported as an unknown type below.
    }
    const type = marketRecordName(segment);
    if (!type) {
      return errorReply(
        404,
        ErrorCode.INGEST_NOT_FOUND,
        `Unknown event type "${typeSegment}"; POST to /v1/events/{${marketRecordNames.join('|')}}.`,
        { types: marketRecordNames },
      );
    }
    const contentType = (request.headers['content-type'] ?? '').toLowerCase();
    const [mediaType, ...parameters] = contentType.split(';').map((p) => p.trim());
    const charset = parameters
      .find((p) => p.startsWith('charset='))
      ?.slice('charset='.length)
      .replaceAll('"', '');
    if (mediaType !== 'application/json' || (charset !== undefined && charset !== 'utf-8')) {
      return {
        ...errorReply(
          415,
          ErrorCode.INGEST_UNSUPPORTED_MEDIA_TYPE,
          `Content-Type must be application/json (UTF-8), got "${request.headers['content-type'] ?? ''}".`,
          { accepted: 'application/json' },
        ),
        close: true,
      };
    }
    const declared = Number(request.headers['content-length'] ?? NaN);
    if (declared > maxBodyBytes) return tooLarge();
    let bucket = buckets.get(key);
    if (!bucket) buckets.set(key, (bucket = new TokenBucket(ratePerSecond, burst, now())));
    // An empty bucket refuses before the body is even read; a partly full one is charged once events are counted.
    const wait = bucket.waitMs(now());
    if (wait > 0) return rateLimited(wait, 1);
    // While Kafka is away, or the queue is full, say so before reading the body.
    if (!producer.available) return { ...unavailable('broker-unavailable'), close: true };
    if (pending >= maxPendingRequests) return { ...unavailable('queue-full', { maxPendingRequests }), close: true };

    const body = await readBody(request);
    if (body === 'too-large') return tooLarge();
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(body);
    } catch {
      return errorReply(400, ErrorCode.INGEST_BAD_JSON, 'Request body is not valid UTF-8.');
    }
    const parsed = parseJson(text);
    if (!parsed.ok) {
      const e = parsed.error;
      return errorReply(400, ErrorCode.INGEST_BAD_JSON, `Request body is not valid JSON: ${describeJsonError(e)}.`, {
        line: e.line,
        column: e.column,
        position: e.position,
        reason: e.reason,
      });
    }
    const many = Array.isArray(parsed.value);
    const events: unknown[] = many ? (parsed.value as unknown[]) : [parsed.value];
    if (events.length === 0)
      return errorReply(400, ErrorCode.RECORD_INVALID, 'The array holds no events.', { fields: [] });
    if (events.length > maxEventsPerRequest) {
      return errorReply(
        413,
        ErrorCode.INGEST_PAYLOAD_TOO_LARGE,
        `${events.length} events in one request; the limit is ${maxEventsPerRequest}. Split it.`,
        { events: events.length, maxEventsPerRequest },
      );
    }
    // Charged per Kafka record: a story about n symbols costs n.
    const records = events.reduce<number>((n, event) => n + recordsOf(type, event), 0);
    if (records > burst) {
      return errorReply(
        413,
        ErrorCode.INGEST_PAYLOAD_TOO_LARGE,
        `${events.length} events make ${records} Kafka records, more than the ${burst}-record burst of the rate limit; split the request.`,
        { events: events.length, records, burst },
      );
    }
    const admitted = bucket.take(records, now());
    if (!admitted.ok) return rateLimited(admitted.retryAfterMs, records);

    // Validate everything before producing anything: a request is all or nothing.
    const fields: FieldProblem[] = [];
    const messages: Message[] = [];
    events.forEach((event, i) => {
      const prefix = many ? `[${i}]` : '';
      let value = event;
      if (value !== null && typeof value === 'object' && !Array.isArray(value) && 'type' in value) {
        // Lines of a replay file carry a type; accepted when it agrees with the URL.
        const { type: declaredType, ...rest } = value as Record<string, unknown>;
        if (typeof declaredType !== 'string' || marketRecordName(declaredType) !== type) {
          fields.push({
            path: `${prefix}${prefix ? '.' : ''}type`,
            message: `says ${JSON.stringify(declaredType)} but the URL says ${type}`,
          });
          return;
        }
        value = rest;
      }
      const symbols =
        type === 'NewsItem' && value !== null && typeof value === 'object'
          ? (value as { symbols?: unknown }).symbols
          : undefined;
      if (Array.isArray(symbols) && symbols.length > maxSymbolsPerStory) {
        fields.push({
          path: `${prefix}${prefix ? '.' : ''}symbols`,
          message: `has ${symbols.length} symbols; at most ${maxSymbolsPerStory} per story (each symbol is a Kafka record)`,
        });
        return;
      }
      try {
        messages.push(...producer.encode(type, value, prefix));
      } catch (error) {
        const problems = (error as AgentStreamsError).details?.problems as FieldProblem[] | undefined;
        if ((error as AgentStreamsError).code !== ErrorCode.RECORD_INVALID || !problems) throw error;
        fields.push(...problems);
      }
    });
    if (fields.length > 0) {
      const invalidEvents = new Set(fields.map((f) => (many ? /^\[(\d+)\]/.exec(f.path)?.[1] : '0'))).size;
      return errorReply(
        400,
        ErrorCode.RECORD_INVALID,
        `${invalidEvents} of ${events.length} ${type} events are invalid; nothing was produced. ${fields
          .slice(0, 5)
          .map((f) => `${f.path || '(event)'}: ${f.message}`)
          .join('; ')}${fields.length > 5 ? '; …' : ''}`,
        {
          type,
          fields,
        },
      );
    }
    if (pending >= maxPendingRequests) return unavailable('queue-full', { maxPendingRequests });
    pending += 1;
    try {
      await producer.send(messages);
    } catch (error) {
      // Retriable: the transaction did not commit, so a retry duplicates nothing.
      if (isAgentStreamsError(error, ErrorCode.BROKER_UNAVAILABLE)) {
        log('broker-unavailable', { error: error.message, committed: error.details.committed });
        if (error.retriable) return unavailable('broker-unavailable');
      }
      return internalError(error, 'produce-failed');
    } finally {
      pending -= 1;
    }
    stats.events += events.length;
    options.metrics?.ingestEvents.inc(events.length);
    return { status: 202, body: { accepted: events.length, records: messages.length, type, topic: producer.topic } };
  }

  function rateLimited(retryAfterMs: number, events: number): Reply {
    return errorReply(
      429,
      ErrorCode.INGEST_RATE_LIMITED,
      `Rate limit of ${ratePerSecond} events/s (burst ${burst}) for this API key exceeded; retry after ${Math.ceil(retryAfterMs / 1000)} s.`,
      { retryAfterMs, events, ratePerSecond, burst },
      { 'retry-after': String(Math.max(1, Math.ceil(retryAfterMs / 1000))) },
    );
  }

  async function route(request: IncomingMessage): Promise<Reply> {
    const path = new URL(request.url ?? '/', 'http://gateway').pathname;
    if (path === '/healthz') {
      if (request.method !== 'GET' && request.method !== 'HEAD')
        return errorReply(
          405,
          ErrorCode.INGEST_METHOD_NOT_ALLOWED,
          `Method ${request.method} not allowed; use GET.`,
          {},
          { allow: 'GET, HEAD' },
        );
      return { status: 200, body: { status: 'ok', topic: producer.topic } };
    }
    const match = /^\/v1\/events\/([^/]+)$/.exec(path);
    if (!match)
      return errorReply(
        404,
        ErrorCode.INGEST_NOT_FOUND,
        `No route ${path}; POST /v1/events/{${marketRecordNames.join('|')}} or GET /healthz.`,
      );
    if (request.method !== 'POST')
      return {
        ...errorReply(
          405,
          ErrorCode.INGEST_METHOD_NOT_ALLOWED,
          `Method ${request.method} not allowed; use POST.`,
          {},
          { allow: 'POST' },
        ),
        close: true,
      };
    return handleEvents(request, match[1]!);
  }

  function respond(request: IncomingMessage, response: ServerResponse, reply: Reply): void {
    const body = `${JSON.stringify(reply.body)}\n`;
    stats.requests += 1;
    options.metrics?.ingestRequests.inc({ status: String(reply.status) });
    if (reply.status === 202) stats.accepted += 1;
    else if (reply.status >= 400) stats.rejected += 1;
    response.writeHead(reply.status, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
      ...(reply.close ? { connection: 'close' } : {}),
      ...reply.headers,
    });
    response.end(request.method === 'HEAD' ? undefined : body);
    // Whatever is left of a refused body is discarded, not buffered.
    if (!request.complete) request.resume();
  }

  const server = createServer((request, response) => {
    const handle = (): Promise<void> =>
      route(request).then(
        (reply) => respond(request, response, reply),
        (error: unknown) => respond(request, response, internalError(error, 'internal-error')),
      );
    // Traced (probes are not): the request's span is the parent of the producer span its records carry.
    const traced = request.url?.startsWith('/v1/') ? traceHttpServer(request, '/v1/events/{type}') : undefined;
    if (!traced) return void handle();
    response.once('close', () => traced.end(response.statusCode));
    void context.with(traced.context, handle);
  });
  // Slow clients must not hold connections (and memory) open indefinitely.
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  // Each connection holds a socket and buffers: bound them (the kernel queues the rest, then refuses).
  server.maxConnections = maxConnections;

  return new Promise((resolve, reject) => {
    const onListenError = (error: NodeJS.ErrnoException): void => {
      reject(
        new AgentStreamsError(
          ErrorCode.INGEST_LISTEN_FAILED,
          `Could not listen on ${host}:${port} (${error.code ?? error.message}); choose another port with --port, or 0 for a free one.`,
          {
            cause: error,
            details: { host, port },
          },
        ),
      );
    };
    server.once('error', onListenError);
    server.listen(port, host, () => {
      server.off('error', onListenError);
      const address = server.address();
      const bound = typeof address === 'object' && address !== null ? address.port : port;
      let closing: Promise<void> | undefined;
      resolve({
        port: bound,
        host,
        url: `http://${host}:${bound}`,
        stats,
        close: () => {
          closing ??= new Promise<void>((done, fail) => {
            server.close((error) => (error ? fail(error) : done()));
            server.closeIdleConnections();
          });
          return closing;
        },
      });
    });
  });
}
