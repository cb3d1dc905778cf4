import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KafkaConsumer, KafkaProducer } from '../../../runtime/kafka/port.ts';
import { AvroSerde, registryClient } from '../../../runtime/serde/avro.ts';
import { loadSchemas, parseSchema, registerSchemas } from '../../../runtime/serde/schemas.ts';
import { AgentStreamsError, ErrorCode } from '../../../runtime/errors.ts';
import { config, kafkaClient, uniqueName } from '../../support/stack.ts';

/** A PriceTick-shaped schema in a namespace of its own, so each run registers fresh subjects. */
function tickSchema(namespace: string, extraFields: object[] = []): string {
  return JSON.stringify({
    type: 'record',
    name: 'Tick',
    namespace,
    fields: [
      { name: 'symbol', type: 'string' },
      { name: 'eventTime', type: 'long' },
      { name: 'price', type: 'double' },
      ...extraFields,
    ],
  });
}

describe('Avro through the schema registry and Kafka', () => {
  const kafka = kafkaClient();
  let producer: KafkaProducer;
  let consumer: KafkaConsumer;

  beforeAll(async () => {
    producer = kafka.producer();
    await producer.connect();
  });
  afterAll(async () => {
    await producer.disconnect();
    await consumer?.disconnect();
  });

  it('registers, encodes, produces, consumes and decodes, fetching each schema id once', async () => {
    const namespace = uniqueName('test.roundtrip');
    const schema = parseSchema(tickSchema(namespace), 'tick.avsc');
    const registry = registryClient(config);
    const [registered] = await registerSchemas(config, registry, [schema]);
    expect(registered!.subject).toBe(`${namespace}.Tick`);

    const writer = new AvroSerde(registry);
    await writer.writerFor(schema.subject);
    const topic = uniqueName('test-avro');
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true });
    await admin.disconnect();

    const sent = Array.from({ length: 100 }, (_, i) => ({
      symbol: `SYM${i % 7}`,
      eventTime: 1_767_225_600_000 + i,
      price: 100 + i / 4,
    }));
    await producer.send({
      topic,
      messages: sent.map((v) => ({ key: v.symbol, value: writer.encode(schema.subject, v) })),
    });

    const reader = new AvroSerde(registryClient(config));
    consumer = kafka.consumer({ groupId: uniqueName('test-avro-group') });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const received: unknown[] = [];
    const ids = new Set<number>();
    await new Promise<void>((resolve, reject) => {
      consumer
        .run({
          eachBatch: async ({ batch }) => {
            await reader.resolve(batch.messages.map((m) => m.value));
            for (const message of batch.messages) {
              const decoded = reader.decodeResolved(message.value);
              expect(decoded.recordType).toBe(schema.subject);
              ids.add(decoded.schemaId);
              received.push(decoded.value);
            }
            if (received.length >= sent.length) resolve();
          },
        })
        .catch(reject);
    });
    expect(ids).toEqual(new Set([registered!.id]));
    expect(received).toHaveLength(100);
    expect(new Set(received.map((r) => JSON.stringify(r)))).toEqual(new Set(sent.map((s) => JSON.stringify(s))));
    // 100 records over up to 3 batches: the reader asked the registry once.
    expect(reader.registryLookups).toBe(1);
  });

  it('registers the identical schema twice under one id', async () => {
    const schema = parseSchema(tickSchema(uniqueName('test.same')), 'tick.avsc');
    const registry = registryClient(config);
    const [first] = await registerSchemas(config, registry, [schema]);
    const [second] = await registerSchemas(config, registry, [schema]);
    expect(second!.id).toBe(first!.id);
  });

  it('accepts a compatible change and refuses an incompatible one before anything is registered', async () => {
    const namespace = uniqueName('test.compat');
    const registry = registryClient(config);
    const [v1] = await registerSchemas(config, registry, [parseSchema(tickSchema(namespace), 'v1.avsc')]);

    const compatible = parseSchema(tickSchema(namespace, [{ name: 'venue', type: 'string', default: '' }]), 'v2.avsc');
    const [v2] = await registerSchemas(config, registry, [compatible]);
    expect(v2!.id).not.toBe(v1!.id);

    const incompatible = parseSchema(
      tickSchema(namespace, [
        { name: 'venue', type: 'string', default: '' },
        { name: 'size', type: 'long' },
      ]),
      'v3.avsc',
    );
    const error = await registerSchemas(config, registry, [incompatible]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AgentStreamsError);
    expect((error as AgentStreamsError).code).toBe(ErrorCode.SCHEMA_INCOMPATIBLE);
    expect((error as AgentStreamsError).message).toContain('v3.avsc is not BACKWARD-compatible');
    expect(await registry.getLatestSchemaId(`${namespace}.Tick`)).toBe(v2!.id);
  });

  it('says why a value cannot be decoded', async () => {
    const serde = new AvroSerde(registryClient(config));
    const reasons = async (buffer: Buffer | null): Promise<unknown> =>
      serde.decode(buffer).then(
        () => 'decoded',
        (e: AgentStreamsError) => [e.code, e.details.reason],
      );
    expect(await reasons(null)).toEqual([ErrorCode.DESERIALIZE, 'empty']);
    expect(await reasons(Buffer.from('{"json":true}'))).toEqual([ErrorCode.DESERIALIZE, 'magic-byte']);
    expect(await reasons(Buffer.from([0, 0x7f, 0xff, 0xff, 0xf0, 1, 2]))).toEqual([
      ErrorCode.DESERIALIZE,
      'unknown-schema',
    ]);

    const schema = parseSchema(tickSchema(uniqueName('test.body')), 'tick.avsc');
    const [registered] = await registerSchemas(config, registryClient(config), [schema]);
    const truncated = Buffer.alloc(6);
    truncated.writeInt32BE(registered!.id, 1);
    truncated[5] = 0x09;
    expect(await reasons(truncated)).toEqual([ErrorCode.DESERIALIZE, 'body']);
  });

  it('loads the project schemas and rejects a value that does not match on encode', async () => {
    const schemas = loadSchemas(join(import.meta.dirname, '../../../schemas'));
    expect(schemas.map((s) => s.subject)).toContain('agentstreams.market.PriceTick');
    const registry = registryClient(config);
    await registerSchemas(config, registry, schemas);
    const serde = new AvroSerde(registry);
    await serde.writerFor('agentstreams.market.PriceTick');
    expect(() => serde.encode('agentstreams.market.PriceTick', { symbol: 'ACME', price: 'high' })).toThrow(
      /invalid at: eventTime, price/,
    );
  });
});
