/**
 * The HTTP ingest gateway on the real stack: good requests are acknowledged after Kafka has the records, and every
 * kind of bad request is refused with its status and a JSON error, leaving nothing in Kafka. The topic is read back
 * at the end: exactly the good requests' records are there.
 */
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import type { Message } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openMarketProducer, type MarketProducer } from '../../connectors/market-producer.ts';
import { startIngestGateway, TokenBucket, type IngestGateway } from '../../connectors/http-ingest.ts';
import { AgentStreamsError, ErrorCode } from '../../runtime/errors.ts';
import { config, kafkaClient, uniqueName } from '../support/stack.ts';
import { readTopic } from './read-topic.ts';

const keyA = randomBytes(24).toString('hex');
const keyB = randomBytes(24).toString('hex');
const keyC = randomBytes(24).toString('hex');
const T0 = Date.UTC(2026, 0, 5, 14, 30);
const topic = uniqueName('ingest');

let producer: MarketProducer;
let gateway: IngestGateway;
/** The rate limiter's clock: it moves only when a test moves it. */
let clock = 1_000_000;
/** Marker of every record that must be in Kafka (tradeId, tick venue, story or filing id), with its key. */
const expected: string[] = [];
/** Markers of records sent in refused requests: none may be in Kafka. */
const refused = new Set<string>();

const trade = (marker: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  symbol: 'ACME',
  eventTime: T0,
  price: 10.5,
  quantity: 100,
  side: 'BUY',
  tradeId: marker,
  ...extra,
});

interface Response {
  status: number;
  headers: Headers;
  body: {
    error?: { code: string; message: string; details: Record<string, unknown> };
    accepted?: number;
    records?: number;
    status?: string;
  };
}

async function post(path: string, body: string, headers: Record<string, string> = {}): Promise<Response> {
  const response = await fetch(`${gateway.url}${path}`, {
    method: 'POST',
    body,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${keyA}`, ...headers },
  });
  return { status: response.status, headers: response.headers, body: (await response.json()) as Response['body'] };
}

describe('HTTP ingest gateway', () => {
  beforeAll(async () => {
    producer = await openMarketProducer(config, { topic, clientId: 'ingest-test', transactional: true });
    gateway = await startIngestGateway({
      producer,
      apiKeys: [keyA, keyB, keyC],
      port: 0,
      ratePerSecond: 5,
      burst: 100,
      maxEventsPerRequest: 50,
      maxBodyBytes: 8192,
      maxSymbolsPerStory: 10,
      now: () => clock,
    });
  });
  afterAll(async () => {
    await gateway?.close();
    await producer?.close();
  });

  it('accepts one event, an array, and a multi-symbol story (202 with counts, after Kafka acknowledged)', async () => {
    const one = await post('/v1/events/Trade', JSON.stringify(trade('good-1')));
    expect(one.status).toBe(202);
    expect(one.body).toEqual({ accepted: 1, records: 1, type: 'Trade', topic });
    expected.push('ACME:good-1');

    const ticks = ['good-tick-1', 'good-tick-2', 'good-tick-3'].map((venue, i) => ({
      type: 'PriceTick',
      symbol: 'BOLT',
      eventTime: new Date(T0 + i).toISOString(),
      price: 20 + i,
      venue,
    }));
    const many = await post('/v1/events/PriceTick', JSON.stringify(ticks), { authorization: '', 'x-api-key': keyA });
    expect(many.status).toBe(202);
    expect(many.body.accepted).toBe(3);
    expected.push('BOLT:good-tick-1', 'BOLT:good-tick-2', 'BOLT:good-tick-3');

    const story = await post(
      '/v1/events/agentstreams.market.NewsItem',
      JSON.stringify({
        id: 'good-news',
        symbols: ['ACME', 'CRUX'],
        headline: 'Acme and Crux merge',
        source: 'Wire',
        eventTime: T0,
      }),
    );
    expect(story.status).toBe(202);
    expect(story.body).toMatchObject({ accepted: 1, records: 2 });
    expected.push('ACME:good-news', 'CRUX:good-news');
  });

  it('accepts concurrent requests', async () => {
    const replies = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        post('/v1/events/Trade', JSON.stringify([trade(`good-c${i}a`), trade(`good-c${i}b`, { symbol: 'DYNA' })])),
      ),
    );
    expect(replies.map((r) => r.status)).toEqual(Array(10).fill(202));
    for (let i = 0; i < 10; i += 1) expected.push(`ACME:good-c${i}a`, `DYNA:good-c${i}b`);
  });

  it('refuses malformed JSON with 400 and where it went wrong', async () => {
    refused.add('bad-json');
    const r = await post('/v1/events/Trade', '{"symbol": "ACME",\n  "tradeId": "bad-json" "price": 1}');
    expect(r.status).toBe(400);
    expect(r.body.error).toMatchObject({
      code: ErrorCode.INGEST_BAD_JSON,
      details: { line: 2, column: 25, position: 43 },
    });
    expect(r.body.error!.message).toContain("expected ',' or '}' after a property value at line 2, column 25");
  });

  it('refuses a schema-invalid request with 400 listing the field paths, producing none of its events', async () => {
    refused.add('bad-schema-ok').add('bad-schema-1');
    const r = await post(
      '/v1/events/Trade',
      JSON.stringify([
        trade('bad-schema-ok'),
        { ...trade('bad-schema-1', { price: 'cheap', quantity: 2.5 }), venue: 'X' },
        { symbol: 'ACME' },
      ]),
    );
    expect(r.status).toBe(400);
    expect(r.body.error!.code).toBe(ErrorCode.RECORD_INVALID);
    const fields = r.body.error!.details.fields as Array<{ path: string; message: string }>;
    expect(fields.map((f) => f.path)).toEqual([
      '[1].venue',
      '[1].price',
      '[1].quantity',
      '[2].eventTime',
      '[2].price',
      '[2].quantity',
      '[2].tradeId',
    ]);
    expect(fields[1]!.message).toBe('expected a number, got the string "cheap"');
    expect(fields[3]!.message).toBe('is missing; expected a whole number (long)');
    expect(r.body.error!.message).toMatch(/^2 of 3 Trade events are invalid; nothing was produced/);
  });

  it('refuses an oversized body and too many events with 413', async () => {
    refused.add('bad-big');
    const big = await post('/v1/events/Trade', JSON.stringify(trade('bad-big', { padding: 'x'.repeat(9000) })));
    expect(big.status).toBe(413);
    expect(big.body.error).toMatchObject({ code: ErrorCode.INGEST_PAYLOAD_TOO_LARGE, details: { maxBodyBytes: 8192 } });
    // Without a content-length (chunked), the limit is enforced while reading.
    const chunks = [JSON.stringify(trade('bad-big', { padding: 'x'.repeat(5000) })).slice(0, 5000), 'x'.repeat(5000)];
    const streamed = await fetch(`${gateway.url}/v1/events/Trade`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${keyA}` },
      body: new ReadableStream({
        pull(controller) {
          const next = chunks.shift();
          if (next === undefined) controller.close();
          else controller.enqueue(new TextEncoder().encode(next));
        },
      }),
      duplex: 'half',
    } as RequestInit);
    expect(streamed.status).toBe(413);
    expect(streamed.headers.get('transfer-encoding')).toBeNull();
    refused.add('bad-many-0');
    const many = await post(
      '/v1/events/Trade',
      JSON.stringify(Array.from({ length: 51 }, (_, i) => ({ tradeId: `bad-many-${i}` }))),
    );
    expect(many.status).toBe(413);
    expect(many.body.error!.details).toMatchObject({ events: 51, maxEventsPerRequest: 50 });
  });

  it('refuses missing and wrong API keys with 401', async () => {
    refused.add('bad-anon').add('bad-key');
    const anonymous = await post('/v1/events/Trade', JSON.stringify(trade('bad-anon')), { authorization: '' });
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(anonymous.body.error).toMatchObject({
      code: ErrorCode.INGEST_UNAUTHENTICATED,
      details: { reason: 'missing' },
    });
    const wrong = await post('/v1/events/Trade', JSON.stringify(trade('bad-key')), {
      authorization: `Bearer ${keyA.slice(0, -1)}x`,
    });
    expect(wrong.status).toBe(401);
    expect(wrong.body.error).toMatchObject({ code: ErrorCode.INGEST_UNAUTHENTICATED, details: { reason: 'invalid' } });
  });

  it('rate-limits per key with 429 and a retry-after that is enough', async () => {
    const asB = { authorization: `Bearer ${keyB}` };
    const batch = (prefix: string, n: number): string =>
      JSON.stringify(Array.from({ length: n }, (_, i) => trade(`${prefix}-${i}`, { symbol: 'ECHO' })));
    expect((await post('/v1/events/Trade', batch('good-b1', 50), asB)).status).toBe(202);
    expect((await post('/v1/events/Trade', batch('good-b2', 50), asB)).status).toBe(202);
    for (let i = 0; i < 50; i += 1) expected.push(`ECHO:good-b1-${i}`, `ECHO:good-b2-${i}`);
    refused.add('bad-limited-0');
    const limited = await post('/v1/events/Trade', batch('bad-limited', 10), asB);
    expect(limited.status).toBe(429);
    expect(limited.body.error!.code).toBe(ErrorCode.INGEST_RATE_LIMITED);
    // An empty bucket refuses before reading the body: one token at 5/s is 200 ms away, rounded up to a second.
    expect(limited.headers.get('retry-after')).toBe('1');
    // Key A has its own bucket.
    expect(await post('/v1/events/Trade', JSON.stringify(trade('good-a-after')))).toMatchObject({ status: 202 });
    expected.push('ACME:good-a-after');
    clock += 1000; // 5 tokens back
    const partly = await post('/v1/events/Trade', batch('bad-partly', 10), asB);
    expect(partly.status).toBe(429);
    refused.add('bad-partly-0');
    expect(partly.body.error!.details.retryAfterMs).toBe(1000);
    expect(partly.headers.get('retry-after')).toBe('1');
    clock += Number(partly.headers.get('retry-after')) * 1000;
    expect((await post('/v1/events/Trade', batch('good-b3', 10), asB)).status).toBe(202);
    for (let i = 0; i < 10; i += 1) expected.push(`ECHO:good-b3-${i}`);
  });

  it('refuses a wrong content type with 415, an unknown type with 404, and answers /healthz', async () => {
    refused.add('bad-type');
    const text = await post('/v1/events/Trade', JSON.stringify(trade('bad-type')), { 'content-type': 'text/plain' });
    expect(text.status).toBe(415);
    expect(text.body.error!.code).toBe(ErrorCode.INGEST_UNSUPPORTED_MEDIA_TYPE);
    const form = await post('/v1/events/Trade', 'tradeId=bad-type', {
      'content-type': 'application/x-www-form-urlencoded',
    });
    expect(form.status).toBe(415);
    const unknown = await post('/v1/events/Quote', JSON.stringify(trade('bad-type')));
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toMatchObject({
      code: ErrorCode.INGEST_NOT_FOUND,
      details: { types: ['PriceTick', 'Trade', 'NewsItem', 'Filing'] },
    });
    const mismatch = await post('/v1/events/Trade', JSON.stringify({ type: 'PriceTick', ...trade('bad-type') }));
    expect(mismatch.status).toBe(400);
    const health = await fetch(`${gateway.url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok', topic });
    const get = await fetch(`${gateway.url}/v1/events/Trade`);
    expect(get.status).toBe(405);
  });

  it('charges the rate limit per Kafka record: a story about n symbols costs n', async () => {
    const asC = { authorization: `Bearer ${keyC}` };
    const story = (id: string, n: number): Record<string, unknown> => ({
      id,
      symbols: Array.from({ length: n }, (_, i) => `S${String.fromCharCode(65 + i)}`),
      headline: 'h',
      source: 'Wire',
      eventTime: T0,
    });
    const symbolsOf = (n: number): string[] => Array.from({ length: n }, (_, i) => `S${String.fromCharCode(65 + i)}`);
    const first = await post('/v1/events/NewsItem', JSON.stringify(story('good-rs-0', 10)), asC);
    expect(first).toMatchObject({ status: 202, body: { accepted: 1, records: 10 } });
    for (const s of symbolsOf(10)) expected.push(`${s}:good-rs-0`);
    // 8 stories of 10 symbols and one of 9: 89 records, 99 of the 100-record burst spent (per event it would be 10).
    const nine = [...Array.from({ length: 8 }, (_, i) => story(`good-rs-${i + 1}`, 10)), story('good-rs-9', 9)];
    expect((await post('/v1/events/NewsItem', JSON.stringify(nine), asC)).status).toBe(202);
    for (const [i, n] of [10, 10, 10, 10, 10, 10, 10, 10, 9].entries())
      for (const s of symbolsOf(n)) expected.push(`${s}:good-rs-${i + 1}`);
    refused.add('bad-rs');
    const over = await post('/v1/events/NewsItem', JSON.stringify(story('bad-rs', 2)), asC);
    expect(over.status).toBe(429);
    expect(over.body.error!.details).toMatchObject({ events: 2, retryAfterMs: 200 });
  });

  it('refuses a story above the symbol cap with 400, naming the cap', async () => {
    refused.add('bad-cap');
    clock += 60_000;
    const r = await post(
      '/v1/events/NewsItem',
      JSON.stringify({
        id: 'bad-cap',
        symbols: Array.from({ length: 11 }, (_, i) => `T${String.fromCharCode(65 + i)}`),
        headline: 'h',
        source: 'Wire',
        eventTime: T0,
      }),
    );
    expect(r.status).toBe(400);
    expect(r.body.error!.code).toBe(ErrorCode.RECORD_INVALID);
    expect(r.body.error!.details.fields).toEqual([
      { path: 'symbols', message: 'has 11 symbols; at most 10 per story (each symbol is a Kafka record)' },
    ]);
  });

  it('bounds the send queue (503 + Retry-After beyond it) and answers 503 without internal text while Kafka fails', async () => {
    let release: () => void = () => {};
    const held = new Promise<void>((done) => (release = done));
    let failWith: unknown;
    let available = true;
    // The real producer behind a gate, so that a request can be held in the queue or a failure injected.
    const gated = Object.create(producer, {
      send: {
        value: async (messages: Message[]) => {
          if (failWith) throw failWith;
          await held;
          return producer.send(messages);
        },
      },
      available: { get: () => available },
    }) as MarketProducer;
    const small = await startIngestGateway({
      producer: gated,
      apiKeys: [keyA],
      port: 0,
      maxPendingRequests: 1,
      maxConnections: 4,
    });
    try {
      const at = (body: unknown): Promise<globalThis.Response> =>
        fetch(`${small.url}/v1/events/Trade`, {
          method: 'POST',
          body: JSON.stringify(body),
          headers: { 'content-type': 'application/json', authorization: `Bearer ${keyA}` },
        });
      const waiting = at(trade('good-queued'));
      await new Promise((done) => setTimeout(done, 200));
      refused.add('bad-queue-full');
      const full = await at(trade('bad-queue-full'));
      expect(full.status).toBe(503);
      expect(full.headers.get('retry-after')).toBe('2');
      expect(((await full.json()) as Response['body']).error).toMatchObject({
        code: ErrorCode.INGEST_UNAVAILABLE,
        details: { reason: 'queue-full', maxPendingRequests: 1 },
      });
      release();
      expect((await waiting).status).toBe(202);
      expected.push('ACME:good-queued');

      refused.add('bad-unavailable').add('bad-internal').add('bad-down');
      failWith = new AgentStreamsError(ErrorCode.BROKER_UNAVAILABLE, 'connect ECONNREFUSED 10.1.2.3:9092', {
        retriable: true,
        details: { committed: false },
      });
      const down = await at(trade('bad-unavailable'));
      expect(down.status).toBe(503);
      expect(down.headers.get('retry-after')).toBe('2');
      const downText = await down.text();
      expect(downText).toContain(ErrorCode.INGEST_UNAVAILABLE);
      expect(downText).not.toContain('ECONNREFUSED');
      failWith = new Error('secret internal detail at /srv/app.ts:12');
      const internal = await at(trade('bad-internal'));
      expect(internal.status).toBe(500);
      const internalText = await internal.text();
      expect(internalText).toContain(ErrorCode.INGEST_INTERNAL);
      expect(internalText).not.toContain('secret');
      expect(internalText).toMatch(/"errorId":"[^"]+"/);
      failWith = undefined;
      available = false;
      const away = await at(trade('bad-down'));
      expect(away.status).toBe(503);
      expect(((await away.json()) as Response['body']).error).toMatchObject({
        code: ErrorCode.INGEST_UNAVAILABLE,
        details: { reason: 'broker-unavailable' },
      });
      available = true;

      // Connections beyond maxConnections are dropped by the server.
      const sockets = await Promise.all(
        Array.from(
          { length: 4 },
          () =>
            new Promise<ReturnType<typeof connect>>((done) => {
              const s = connect(small.port, '127.0.0.1', () => done(s));
            }),
        ),
      );
      await new Promise((done) => setTimeout(done, 100));
      const opened = Date.now();
      const fifth = connect(small.port, '127.0.0.1');
      const closedAt = await new Promise<number>((done) => fifth.once('close', () => done(Date.now())));
      // Without the bound it would stay open until the 10 s header timeout.
      expect(closedAt - opened).toBeLessThan(2000);
      for (const s of sockets) s.destroy();
    } finally {
      await small.close();
    }
  });

  it('validates the queue and connection bounds at start', async () => {
    await expect(
      startIngestGateway({
        producer,
        apiKeys: [keyA],
        port: 0,
        maxPendingRequests: 0,
        maxConnections: 1.5,
        maxSymbolsPerStory: 0,
      }),
    ).rejects.toMatchObject({
      code: ErrorCode.CONNECTOR_OPTIONS_INVALID,
      message: expect.stringMatching(
        /maxSymbolsPerStory must be .*maxPendingRequests must be a whole number >= 1, got 0; maxConnections must be a whole number >= 1, got 1.5/,
      ),
    });
  });

  it('has put exactly the good requests’ records in Kafka', async () => {
    const records = await readTopic(kafkaClient(), topic);
    const markers = records.map((r) => `${r.key}:${String(r.value.tradeId ?? r.value.venue ?? r.value.id)}`);
    expect(markers.sort()).toEqual([...expected].sort());
    for (const marker of markers) expect(refused.has(marker.split(':')[1]!)).toBe(false);
    expect(gateway.stats.accepted).toBe(19);
  });
});

describe('token bucket', () => {
  it('admits up to the burst, then refills at the rate and says how long to wait', () => {
    const bucket = new TokenBucket(10, 20, 0);
    expect(bucket.take(20, 0)).toEqual({ ok: true });
    expect(bucket.take(1, 0)).toEqual({ ok: false, retryAfterMs: 100 });
    expect(bucket.waitMs(50)).toBe(50);
    expect(bucket.take(5, 500)).toEqual({ ok: true });
    expect(bucket.take(20, 500)).toEqual({ ok: false, retryAfterMs: 2000 });
    expect(bucket.take(20, 10_000)).toEqual({ ok: true }); // never more than the burst
    expect(bucket.take(1, 10_000)).toEqual({ ok: false, retryAfterMs: 100 });
  });
});
