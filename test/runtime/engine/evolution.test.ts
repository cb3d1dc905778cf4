/**
 * Schema evolution on the real stack: two versions of one record type registered as two versions of one subject
 * in the registry, records of both produced to one topic, read by two processors (consumer groups) built against
 * different versions. The one built against v2 sees v2's defaults in v1 records; the one built against v1 does
 * not see the fields v2 added (v1 → v2 is compatible both ways: FULL). A third version that retypes a field,
 * registered only because the subject's rule was relaxed to NONE, is dead-lettered by both as incompatible, and
 * both go on.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import avro from 'avsc';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { registryClient, WIRE_HEADER_BYTES } from '../../../runtime/serde/avro.ts';
import { parseSchema, registerSchemas, registryHttp } from '../../../runtime/serde/schemas.ts';
import { runProcessor } from '../../../runtime/engine/runner.ts';
import { listDeadLetters } from '../../../runtime/engine/redrive.ts';
import { defineTopology, processor } from '../../../runtime/topology/topology.ts';
import { config, kafkaClient, uniqueName } from '../../support/stack.ts';

const root = join(import.meta.dirname, '../../..');
const fixture = (file: string): Record<string, unknown> =>
  JSON.parse(readFileSync(join(root, 'test/fixtures/evolution', file), 'utf8')) as Record<string, unknown>;

describe('schema evolution on read, on the real stack', () => {
  it("v1 and v2 records on one topic: a v2 reader sees v2's defaults, a v1 reader drops v2's new fields", async () => {
    const application = uniqueName('evolution').replaceAll('_', '-');
    // A namespace of its own per run: the registry keeps subjects between runs.
    const namespace = `agentstreams.test.${uniqueName('evolution')}`;
    const v1: Record<string, unknown> = { ...fixture('Order.v1.avsc'), namespace };
    const v2: Record<string, unknown> = { ...fixture('Order.v2.avsc'), namespace };
    const subject = `${namespace}.Order`;
    const orders = `${application}.orders`;

    const registry = registryClient(config);
    const [first] = await registerSchemas(config, registry, [parseSchema(JSON.stringify(v1), 'Order.v1.avsc')], 'FULL');
    const [second] = await registerSchemas(
      config,
      registry,
      [parseSchema(JSON.stringify(v2), 'Order.v2.avsc')],
      'FULL',
    );
    expect(first!.id).not.toBe(second!.id);
    const versions = await registryHttp(config, 'GET', `/subjects/${encodeURIComponent(subject)}/versions`);
    expect(versions.json).toEqual([1, 2]);
    // quantity as a string: no reader of v1 or v2 can resolve it. The registry refuses it under FULL …
    const v3 = {
      ...v2,
      fields: (v2.fields as Array<Record<string, unknown>>).map((f) =>
        f.name === 'quantity' ? { name: 'quantity', type: 'string' } : f,
      ),
    };
    await expect(
      registerSchemas(config, registry, [parseSchema(JSON.stringify(v3), 'Order.v3.avsc')], 'FULL'),
    ).rejects.toThrow(/not FULL-compatible/);
    // … and takes it once the subject's rule is NONE, as a careless producer could do.
    const [third] = await registerSchemas(config, registry, [parseSchema(JSON.stringify(v3), 'Order.v3.avsc')], 'NONE');

    const keep = (name: string) =>
      processor({
        inputs: [orders],
        stores: ['seen'],
        readerSchemas: { [subject]: name === 'v2-reader' ? v2 : v1 },
        process: (record, ctx) =>
          ctx.store<unknown>('seen').set({ recordType: record.recordType, value: { ...(record.value as object) } }),
      });
    const topology = defineTopology({
      application,
      topics: { [orders]: { partitions: 2 } },
      processors: { 'v2-reader': keep('v2-reader'), 'v1-reader': keep('v1-reader') },
    });

    const frame = (id: number, schema: Record<string, unknown>, value: unknown): Buffer => {
      const body = avro.Type.forSchema(schema as avro.Schema).toBuffer(value);
      const out = Buffer.alloc(WIRE_HEADER_BYTES + body.length);
      out.writeInt32BE(id, 1);
      body.copy(out, WIRE_HEADER_BYTES);
      return out;
    };
    const eventTime = Date.UTC(2026, 0, 1);
    const written = [
      { key: 'o1', value: frame(first!.id, v1, { orderId: 'o1', eventTime, quantity: 1, note: 'first' }) },
      {
        key: 'o2',
        value: frame(second!.id, v2, { orderId: 'o2', eventTime, quantity: 2, currency: 'EUR', priority: 1 }),
      },
      { key: 'o3', value: frame(first!.id, v1, { orderId: 'o3', eventTime, quantity: 3, note: 'third' }) },
      {
        key: 'o4',
        value: frame(second!.id, v2, { orderId: 'o4', eventTime, quantity: 4, currency: 'JPY', priority: 9 }),
      },
      {
        key: 'o5',
        value: frame(third!.id, v3, { orderId: 'o5', eventTime, quantity: 'five', currency: 'USD', priority: 0 }),
      },
      { key: 'o6', value: frame(first!.id, v1, { orderId: 'o6', eventTime, quantity: 6, note: 'after the bad one' }) },
    ];
    const kafka = kafkaClient();
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic: orders, numPartitions: 2 }], waitForLeaders: true });
    await admin.disconnect();
    const producer = kafka.producer({ idempotent: true });
    await producer.connect();
    await producer.send({ topic: orders, acks: -1, messages: written });
    await producer.disconnect();

    const readers = await Promise.all([
      runProcessor({ config, topology, processor: 'v2-reader' }),
      runProcessor({ config, topology, processor: 'v1-reader' }),
    ]);
    const deadline = Date.now() + 60_000;
    while (readers.some((r) => r.stats.records < written.length) && Date.now() < deadline) await sleep(100);
    await Promise.all(readers.map((r) => r.stop()));
    for (const r of readers) {
      expect(r.stats.records).toBe(written.length);
      expect(r.stats.deadLettered).toBe(1);
    }
    const dead = await listDeadLetters(kafka, topology.deadLetterTopic, 10);
    expect(dead.map((d) => d.processor).sort()).toEqual(['v1-reader', 'v2-reader']);
    for (const d of dead) {
      expect(d.key).toBe('o5');
      expect(d.errorCode).toBe('AS_DESERIALIZE');
      expect(d.errorMessage).toContain(`${subject} written with schema id ${third!.id} cannot be read as ${subject}`);
    }

    const redis = new Redis(config.redis.url);
    const seen = async (reader: string, key: string): Promise<unknown> => {
      const stored = await Promise.all(
        [0, 1].map((p) => redis.get(`as:{${topology.groupId(reader)}:${p}}:s:seen:${key}`)),
      );
      const found = stored.find((s) => s !== null);
      return found ? (JSON.parse(found) as { v: unknown }).v : undefined;
    };
    try {
      // Built against v2: v1 records get currency and priority from v2's defaults, and no note (v2 removed it).
      expect(await seen('v2-reader', 'o1')).toEqual({
        recordType: subject,
        value: { orderId: 'o1', eventTime, quantity: 1, currency: 'USD', priority: 5 },
      });
      expect(await seen('v2-reader', 'o2')).toEqual({
        recordType: subject,
        value: { orderId: 'o2', eventTime, quantity: 2, currency: 'EUR', priority: 1 },
      });
      expect(await seen('v2-reader', 'o3')).toEqual({
        recordType: subject,
        value: { orderId: 'o3', eventTime, quantity: 3, currency: 'USD', priority: 5 },
      });
      // Built against v1: v2 records lose currency and priority, and get note's default; v1 records are as written.
      expect(await seen('v1-reader', 'o1')).toEqual({
        recordType: subject,
        value: { orderId: 'o1', eventTime, quantity: 1, note: 'first' },
      });
      expect(await seen('v1-reader', 'o4')).toEqual({
        recordType: subject,
        value: { orderId: 'o4', eventTime, quantity: 4, note: '' },
      });
      // The incompatible record was skipped, and the partition went on.
      expect(await seen('v2-reader', 'o5')).toBeUndefined();
      expect(await seen('v2-reader', 'o6')).toEqual({
        recordType: subject,
        value: { orderId: 'o6', eventTime, quantity: 6, currency: 'USD', priority: 5 },
      });
    } finally {
      redis.disconnect();
    }
  }, 120_000);

  it('the registry refuses what docs/schemas.md says each compatibility level refuses', async () => {
    const registry = registryClient(config);
    const v1 = fixture('Order.v1.avsc');
    const fields = v1.fields as Array<Record<string, unknown>>;
    const changes: Record<string, Record<string, unknown>> = {
      'add a field with a default': {
        ...v1,
        fields: [...fields, { name: 'currency', type: 'string', default: 'USD' }],
      },
      'add a field without a default': { ...v1, fields: [...fields, { name: 'currency', type: 'string' }] },
      'remove a field that has a default': { ...v1, fields: fields.filter((f) => f.name !== 'note') },
      'remove a field without a default': { ...v1, fields: fields.filter((f) => f.name !== 'quantity') },
      'retype a field (long to string)': {
        ...v1,
        fields: fields.map((f) => (f.name === 'quantity' ? { name: 'quantity', type: 'string' } : f)),
      },
      'promote a field (long to double)': {
        ...v1,
        fields: fields.map((f) => (f.name === 'quantity' ? { name: 'quantity', type: 'double' } : f)),
      },
      'rename a field with an alias': {
        ...v1,
        fields: fields.map((f) => (f.name === 'quantity' ? { name: 'units', type: 'long', aliases: ['quantity'] } : f)),
      },
    };
    const levels = ['BACKWARD', 'FORWARD', 'FULL'] as const;
    const verdicts: Record<string, Record<string, boolean>> = {};
    for (const [change, schema] of Object.entries(changes)) {
      verdicts[change] = {};
      for (const level of levels) {
        // A subject of its own per (change, level), with v1 registered, then the change offered under the level.
        const namespace = `agentstreams.test.${uniqueName('compat')}`;
        await registerSchemas(
          config,
          registry,
          [parseSchema(JSON.stringify({ ...v1, namespace }), 'Order.v1.avsc')],
          level,
        );
        verdicts[change]![level] = await registerSchemas(
          config,
          registry,
          [parseSchema(JSON.stringify({ ...schema, namespace }), `${change}.avsc`)],
          level,
        ).then(
          () => true,
          (error: Error) => {
            expect(error.message).toMatch(new RegExp(`is not ${level}-compatible`));
            return false;
          },
        );
      }
    }
    expect(verdicts).toEqual({
      'add a field with a default': { BACKWARD: true, FORWARD: true, FULL: true },
      'add a field without a default': { BACKWARD: false, FORWARD: true, FULL: false },
      'remove a field that has a default': { BACKWARD: true, FORWARD: true, FULL: true },
      'remove a field without a default': { BACKWARD: true, FORWARD: false, FULL: false },
      'retype a field (long to string)': { BACKWARD: false, FORWARD: false, FULL: false },
      'promote a field (long to double)': { BACKWARD: true, FORWARD: false, FULL: false },
      'rename a field with an alias': { BACKWARD: true, FORWARD: false, FULL: false },
    });
  }, 120_000);
});
