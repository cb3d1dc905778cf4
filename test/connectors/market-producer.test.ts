/**
 * The connectors' producer on the real stack: records validated with every problem named, news keyed once per
 * symbol, concurrent sends coalesced into few produce requests, and requests split by size.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openMarketProducer, type MarketProducer } from '../../connectors/market-producer.ts';
import { AgentStreamsError, ErrorCode } from '../../runtime/errors.ts';
import { config, kafkaClient, uniqueName } from '../support/stack.ts';
import { readTopic } from './read-topic.ts';

const T0 = Date.UTC(2026, 0, 5, 14, 30);
const topic = uniqueName('market-producer');
let producer: MarketProducer;

describe('market producer', () => {
  beforeAll(async () => {
    producer = await openMarketProducer(config, {
      topic,
      partitions: 3,
      clientId: 'producer-test',
      maxBatchBytes: 2048,
    });
  });
  afterAll(async () => {
    await producer?.close();
  });

  it('refuses an invalid record with every problem and its path', () => {
    const error = (() => {
      try {
        producer.encode('Filing', {
          id: 'f',
          symbol: 'ACME',
          formType: '4',
          eventTime: 'yesterday',
          insider: { name: 'J', shares: -1.5, direction: 'HOLD' },
          extra: 1,
        });
      } catch (e) {
        return e;
      }
    })() as AgentStreamsError;
    expect(error).toBeInstanceOf(AgentStreamsError);
    expect(error.code).toBe(ErrorCode.RECORD_INVALID);
    expect((error.details.problems as Array<{ path: string }>).map((p) => p.path)).toEqual([
      'extra',
      'eventTime',
      'insider.shares',
      'insider.direction',
    ]);
  });

  it('keys a story once per symbol and coalesces concurrent sends into few produce requests', async () => {
    const story = producer.encode('NewsItem', {
      id: 'n-1',
      symbols: ['ACME', 'BOLT', 'ACME'],
      headline: 'h',
      source: 's',
      eventTime: T0,
    });
    expect(story.map((m) => m.key)).toEqual(['ACME', 'BOLT']);
    const before = producer.stats.requests;
    // Ten sends while the first is in flight: the other nine go out together.
    const sends = Array.from({ length: 10 }, (_, i) =>
      producer.send(
        producer.encode('Trade', {
          symbol: 'ACME',
          eventTime: T0 + i,
          price: 1,
          quantity: 1,
          side: 'BUY',
          tradeId: `t-${i}`,
        }),
      ),
    );
    await Promise.all([...sends, producer.send(story)]);
    expect(producer.stats.requests - before).toBe(2);
    // 60 ticks of ~50 bytes with at most 2048 bytes per request: split into at least 2.
    const beforeSplit = producer.stats.requests;
    await producer.send(
      Array.from({ length: 60 }, (_, i) =>
        producer.encode('PriceTick', { symbol: 'CRUX', eventTime: T0 + i, price: 10 + i, venue: 'XNAS-SPLIT-TEST' }),
      ).flat(),
    );
    expect(producer.stats.requests - beforeSplit).toBeGreaterThanOrEqual(2);
    const records = await readTopic(kafkaClient(), topic);
    expect(records).toHaveLength(10 + 2 + 60);
    expect(records.filter((r) => r.key === 'CRUX').map((r) => r.value.price)).toEqual(
      Array.from({ length: 60 }, (_, i) => 10 + i),
    );
  });
});
