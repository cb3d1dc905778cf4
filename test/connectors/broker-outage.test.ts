/**
 * Producers ride out a broker restart (kafka.outageToleranceMs), losing and duplicating nothing, and fail with
 * AS_BROKER_UNAVAILABLE naming the setting when the broker stays away longer.
 *
 * Runs a PRIVATE Kafka broker (own data dir and ports; the shared stack is never touched) and SIGKILLs it
 * mid-stream. The registry is the shared one. Topics are read back with isolation read_committed.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Message } from 'kafkajs';
import type { KafkaPort } from '../../runtime/kafka/port.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../runtime/config/index.ts';
import { openMarketProducer, type MarketProducer } from '../../connectors/market-producer.ts';
import { runFeed } from '../../connectors/synthetic-feed.ts';
import { startIngestGateway, type IngestGateway } from '../../connectors/http-ingest.ts';
import { ErrorCode, isAgentStreamsError } from '../../runtime/errors.ts';
import { startPrivateBroker, type PrivateBroker } from '../support/private-broker.ts';
import { uniqueName } from '../support/stack.ts';

let broker: PrivateBroker;
let config: Config;
let kafka: KafkaPort;

/** Every message of `topic` (raw key and value), read with isolation read_committed up to each partition's end. */
async function readCommitted(topic: string): Promise<string[]> {
  const admin = kafka.admin();
  await admin.connect();
  const offsets = await admin.fetchTopicOffsets(topic);
  await admin.disconnect();
  const remaining = new Map(
    offsets.filter((o) => Number(o.high) > Number(o.low)).map((o) => [o.partition, Number(o.high)]),
  );
  const out: string[] = [];
  if (remaining.size === 0) return out;
  const consumer = kafka.consumer({ groupId: uniqueName('outage-read'), readUncommitted: false, maxWaitTimeInMs: 100 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let idleSince = Date.now();
  await consumer.run({
    eachBatch: async ({ batch }) => {
      idleSince = Date.now();
      for (const m of batch.messages) out.push(`${m.key?.toString()}|${m.value!.toString('base64')}`);
      // Transaction markers take offsets too: the batch's last offset, not the last record's, says where it ended.
      const high = remaining.get(batch.partition);
      if (high !== undefined && Number(batch.lastOffset()) >= high - 2) remaining.delete(batch.partition);
    },
  });
  const deadline = Date.now() + 60_000;
  // A partition whose tail is a commit marker never reports its last offset: also stop after 3 s of silence.
  while (remaining.size > 0 && Date.now() < deadline && Date.now() - idleSince < 3000) await sleep(50);
  await consumer.disconnect();
  return out;
}

function multiset(items: string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(item, (counts.get(item) ?? 0) + 1);
  return counts;
}

describe('broker outage', () => {
  beforeAll(async () => {
    broker = await startPrivateBroker('outage', { outageToleranceMs: 60_000 });
    ({ config, kafka } = broker);
  });
  afterAll(async () => {
    await broker?.remove();
  });

  it('feed rides out a SIGKILL + restart of the broker: every event in the topic exactly once', async () => {
    const topic = uniqueName('outage-feed');
    const log: string[] = [];
    const producer = await openMarketProducer(config, {
      topic,
      partitions: 3,
      clientId: 'outage-feed',
      log: (l) => log.push(l),
    });
    const sent: string[] = [];
    const recording: MarketProducer = Object.create(producer, {
      send: {
        value: (messages: Message[]) => {
          for (const m of messages) sent.push(`${String(m.key)}|${(m.value as Buffer).toString('base64')}`);
          return producer.send(messages);
        },
      },
    }) as MarketProducer;
    // 20 s of market at 2000 events/s, paced: the broker dies 4 s in and is started again 5 s later.
    const feed = runFeed(config, { seed: 11, rate: 2000, duration: '20s', pace: true, producer: recording });
    await sleep(4000);
    const killedAt = Date.now();
    await broker.kill();
    await sleep(5000);
    await broker.restart();
    const outageMs = Date.now() - killedAt;
    const result = await feed;
    await producer.close();
    expect(log.some((l) => l.includes('broker unavailable'))).toBe(true);

    const read = await readCommitted(topic);
    expect(result.events).toBe(40_000);
    expect(sent.length).toBe(result.events);
    expect(read.length).toBe(result.events);
    const wanted = multiset(sent);
    const got = multiset(read);
    expect(got.size).toBe(wanted.size);
    for (const [item, n] of wanted) expect(got.get(item)).toBe(n);
    console.info(
      `feed: outage ${outageMs} ms ridden out; ${read.length} records read back read_committed, each exactly once`,
    );
  }, 180_000);

  it('feed fails with AS_BROKER_UNAVAILABLE naming the setting when the broker stays away past the tolerance', async () => {
    const topic = uniqueName('outage-feed-fail');
    const short = { ...config, kafka: { ...config.kafka, outageToleranceMs: 4000 } };
    const feed = runFeed(short, { seed: 12, rate: 2000, duration: '60s', pace: true, topic, partitions: 3 }).then(
      () => undefined,
      (error: unknown) => error,
    );
    await sleep(2000);
    const killedAt = Date.now();
    await broker.kill();
    const error = await feed;
    const failedAfterMs = Date.now() - killedAt;
    expect(isAgentStreamsError(error, ErrorCode.BROKER_UNAVAILABLE)).toBe(true);
    expect((error as Error).message).toContain('AS_KAFKA_OUTAGE_TOLERANCE_MS');
    expect((error as Error).message).toContain('4000 ms');
    expect(failedAfterMs).toBeGreaterThanOrEqual(4000);
    expect(failedAfterMs).toBeLessThan(60_000); // the 4 s setting decided, not kafkajs' own retries or a default
    console.info(
      `feed: failed ${failedAfterMs} ms after the broker died (tolerance 4000 ms): ${(error as Error).message}`,
    );
    await broker.restart();
  }, 120_000);

  it('ingest answers 503 + Retry-After while the broker is away; accepted requests are in Kafka exactly once', async () => {
    const topic = uniqueName('outage-ingest');
    const key = randomBytes(24).toString('hex');
    const producer = await openMarketProducer(config, {
      topic,
      partitions: 3,
      clientId: 'outage-ingest',
      transactional: true,
    });
    let gateway: IngestGateway | undefined;
    try {
      gateway = await startIngestGateway({ producer, apiKeys: [key], port: 0, ratePerSecond: 1_000_000 });
      const url = `${gateway.url}/v1/events/Trade`;
      let stop = false;
      const accepted: string[] = [];
      const unavailable: Array<{ status: number; retryAfter: string | null; code: string; message: string }> = [];
      const client = async (worker: number): Promise<void> => {
        for (let i = 0; !stop; i += 1) {
          const ids = [0, 1, 2].map((j) => `w${worker}-r${i}-${j}`);
          const body = JSON.stringify(
            ids.map((tradeId, j) => ({
              symbol: ['ACME', 'BOLT', 'CRUX'][j],
              eventTime: Date.UTC(2026, 0, 5) + i,
              price: 10,
              quantity: 1,
              side: 'BUY',
              tradeId,
            })),
          );
          // The same request again until it is accepted, as a client honouring 503 would.
          for (;;) {
            const response = await fetch(url, {
              method: 'POST',
              body,
              headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
            });
            const reply = (await response.json()) as { error?: { code: string; message: string } };
            if (response.status === 202) {
              accepted.push(...ids);
              break;
            }
            unavailable.push({
              status: response.status,
              retryAfter: response.headers.get('retry-after'),
              code: reply.error!.code,
              message: reply.error!.message,
            });
            await sleep(300);
          }
        }
      };
      const clients = Promise.all([0, 1, 2, 3].map(client));
      await sleep(2000);
      const killedAt = Date.now();
      await broker.kill();
      await sleep(5000);
      await broker.restart();
      const outageMs = Date.now() - killedAt;
      await sleep(3000);
      stop = true;
      await clients;

      expect(unavailable.length).toBeGreaterThan(0);
      for (const u of unavailable) {
        expect(u.status).toBe(503);
        expect(u.code).toBe(ErrorCode.INGEST_UNAVAILABLE);
        expect(Number(u.retryAfter)).toBeGreaterThanOrEqual(1);
        expect(u.message).not.toMatch(/ECONNREFUSED|KafkaJS|Connection/);
      }
      const records = await readCommitted(topic);
      const ids = records.map((r) => r.split('|')[1]!);
      expect(ids.length).toBe(accepted.length);
      // Decode-free check: each accepted trade id occurs in exactly one record value.
      const seen = new Map<string, number>();
      for (const value of ids) {
        const text = Buffer.from(value, 'base64').toString('latin1');
        const id = /w\d+-r\d+-\d/.exec(text)?.[0];
        expect(id).toBeDefined();
        seen.set(id!, (seen.get(id!) ?? 0) + 1);
      }
      for (const id of accepted) expect(seen.get(id)).toBe(1);
      expect(seen.size).toBe(accepted.length);
      console.info(
        `ingest: outage ${outageMs} ms; ${unavailable.length} answers 503 with retry-after; ${accepted.length} accepted records read back read_committed, each exactly once`,
      );
    } finally {
      await gateway?.close();
      await producer.close();
    }
  }, 180_000);
});
