/**
 * Schema evolution on read, without a service: reader schemas compiled and checked at start, the resolver cache,
 * and records of one version read by a processor built against another, through the topology test driver (the
 * same batch code and the same decoding as the engine). The real-stack test is test/runtime/engine/evolution.test.ts.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import avro from 'avsc';
import { describe, expect, it } from 'vitest';
import { compileReaderSchema, compileReaderSchemas, ResolverCache } from '../../../runtime/serde/readers.ts';
import { AgentStreamsError } from '../../../runtime/errors.ts';
import { parseSchema } from '../../../runtime/serde/schemas.ts';
import { defineTopology, processor, router, type ProcessorSpec } from '../../../runtime/topology/topology.ts';
import { TopologyTestDriver } from '../../../runtime/testing/driver.ts';
import { topic } from '../../../runtime/topology/handles.ts';
import { deadLetterHeader } from '../../../runtime/engine/dead-letter.ts';

const root = join(import.meta.dirname, '../../..');
const v1File = join(root, 'test/fixtures/evolution/Order.v1.avsc');
const v2File = join(root, 'test/fixtures/evolution/Order.v2.avsc');
const v1 = JSON.parse(readFileSync(v1File, 'utf8')) as Record<string, unknown>;
const v2 = JSON.parse(readFileSync(v2File, 'utf8')) as Record<string, unknown>;
const ORDER = 'agentstreams.test.evolution.Order';
const T0 = Date.UTC(2026, 0, 1);

/** A topology whose one processor keeps the last value it saw per key, read with `readerSchemas`. */
function keeper(readerSchemas: ProcessorSpec['readerSchemas']) {
  return defineTopology({
    application: 'evo',
    topics: { orders: { partitions: 1 } },
    processors: {
      keeper: processor({
        inputs: ['orders'],
        stores: ['seen'],
        ...(readerSchemas ? { readerSchemas } : {}),
        process: (record, ctx) =>
          ctx
            .store<{ recordType: string; value: unknown }>('seen')
            .set({ recordType: record.recordType, value: { ...(record.value as object) } }),
      }),
    },
  });
}

const problemsOf = (make: () => unknown): string => {
  try {
    make();
  } catch (error) {
    expect(error).toBeInstanceOf(AgentStreamsError);
    return (error as Error).message;
  }
  throw new Error('expected the topology to be refused');
};

describe('reader schemas at start', () => {
  it('loads a reader schema from a path, a file URL or an object, with its name, aliases and ranges', () => {
    const fromPath = compileReaderSchema(relative(process.cwd(), v2File));
    const fromUrl = compileReaderSchema(pathToFileURL(v2File));
    const fromObject = compileReaderSchema({ ...v2, name: 'Order3', aliases: ['Order'] });
    expect(fromPath.recordType).toBe(ORDER);
    expect(fromUrl.recordType).toBe(ORDER);
    expect(fromObject.reads).toEqual([`agentstreams.test.evolution.Order3`, ORDER]);
    expect(fromPath.ranges).not.toBeNull();
  });

  it('refuses, each with its reason, a missing file, bad JSON, invalid Avro, a non-record, a bad range rule', () => {
    const dir = mkdtempSync(join(tmpdir(), 'as-readers-'));
    const bad = join(dir, 'bad.avsc');
    writeFileSync(bad, '{ "type": "record", ');
    expect(() => compileReaderSchema(join(dir, 'nope.avsc'))).toThrow(/nope\.avsc cannot be read \(ENOENT\)/);
    expect(() => compileReaderSchema(bad)).toThrow(/bad\.avsc is not valid JSON/);
    expect(() => compileReaderSchema({ type: 'record', name: 'X', fields: [{ name: 'a', type: 'strng' }] })).toThrow(
      /an inline schema is not a valid Avro schema: .*strng/,
    );
    expect(() => compileReaderSchema({ type: 'enum', name: 'E', symbols: ['A'] })).toThrow(
      /must define a named record/,
    );
    expect(() =>
      compileReaderSchema({ type: 'record', name: 'X', fields: [{ name: 'a', type: 'string', range: { min: 0 } }] }),
    ).toThrow(/invalid range rule: .*holds no numbers/);
  });

  it('refuses a topology whose reader schema is invalid, keyed by another type, for a type the processor never reads, or on a router', () => {
    expect(
      problemsOf(() =>
        keeper({
          [ORDER]: {
            type: 'record',
            name: 'Order',
            namespace: 'agentstreams.test.evolution',
            fields: [{ name: 'x', type: 'nope' }],
          },
        }),
      ),
    ).toMatch(
      /processor "keeper" reader schema for agentstreams\.test\.evolution\.Order: an inline schema is not a valid Avro schema/,
    );
    expect(problemsOf(() => keeper({ 'agentstreams.test.evolution.Invoice': v2 }))).toMatch(
      /declares its reader schema for agentstreams\.test\.evolution\.Invoice with an inline schema, which defines agentstreams\.test\.evolution\.Order; key it by the record type's full name/,
    );
    // `orders` is written by `feeder` only, with Order: a reader schema for any other type is never used.
    const invoice = {
      type: 'record',
      name: 'Invoice',
      namespace: 'agentstreams.test.evolution',
      fields: [{ name: 'id', type: 'string' }],
    };
    const fed = (readerSchemas: ProcessorSpec['readerSchemas']) =>
      defineTopology({
        application: 'evo',
        topics: { raw: { partitions: 1 }, orders: { partitions: 1 } },
        processors: {
          feeder: processor({ inputs: ['raw'], outputs: { orders: [ORDER] }, process: () => undefined }),
          keeper: processor({
            inputs: ['orders'],
            ...(readerSchemas ? { readerSchemas } : {}),
            process: () => undefined,
          }),
        },
      });
    expect(problemsOf(() => fed({ 'agentstreams.test.evolution.Invoice': invoice }))).toMatch(
      /processor "keeper" declares a reader schema for agentstreams\.test\.evolution\.Invoice, which it never reads: its inputs carry agentstreams\.test\.evolution\.Order/,
    );
    expect(() => fed({ [ORDER]: v2 })).not.toThrow();
    // A typed input handle says what a topic fed from outside carries.
    const typed = (readerSchemas: ProcessorSpec['readerSchemas']) =>
      defineTopology({
        application: 'evo',
        topics: { orders: { partitions: 1 } },
        processors: {
          keeper: processor({
            inputs: [topic<unknown>('orders', ORDER)],
            ...(readerSchemas ? { readerSchemas } : {}),
            process: () => undefined,
          }),
        },
      });
    expect(problemsOf(() => typed({ 'agentstreams.test.evolution.Invoice': invoice }))).toMatch(
      /declares a reader schema for agentstreams\.test\.evolution\.Invoice, which it never reads: its inputs carry agentstreams\.test\.evolution\.Order/,
    );
    expect(() => typed({ [ORDER]: v2 })).not.toThrow();
    // An untyped topic fed from outside may carry any type: the reader schema is only checked for itself.
    expect(() => keeper({ 'agentstreams.test.evolution.Invoice': invoice })).not.toThrow();
    expect(
      problemsOf(() =>
        defineTopology({
          application: 'evo',
          topics: { raw: { partitions: 1 }, orders: { partitions: 1 } },
          processors: {
            r: router({
              inputs: ['raw'],
              routes: { [ORDER]: 'orders' },
              outputs: { orders: [ORDER] },
              readerSchemas: { [ORDER]: v2 },
            }),
          },
        }),
      ),
    ).toMatch(/router "r" declares readerSchemas, but a router never decodes a record body/);
  });
});

describe('the resolver cache', () => {
  it('builds one resolver per (reader, writer id), and remembers a writer it cannot resolve', () => {
    const cache = new ResolverCache();
    const reader = compileReaderSchema(v2);
    const writer = avro.Type.forSchema(v1 as avro.Schema);
    const first = cache.resolve(reader, 7, writer);
    expect('resolver' in first).toBe(true);
    expect(cache.resolve(reader, 7, writer)).toBe(first);
    expect(cache.built).toBe(1);
    const other = compileReaderSchema(v1);
    expect(cache.resolve(other, 7, writer)).not.toBe(first); // another reader of the same writer id
    expect(cache.built).toBe(2);
    const retyped = avro.Type.forSchema({ ...v1, fields: [{ name: 'orderId', type: 'long' }] } as avro.Schema);
    const failed = cache.resolve(reader, 8, retyped);
    expect('error' in failed && failed.error.message).toMatch(/cannot read "long" as "string"|no matching field/);
    expect(cache.resolve(reader, 8, retyped)).toBe(failed);
    expect(cache.built).toBe(3);
  });

  it('compiles a declaration once: validation at start and every codec share it', () => {
    const declared = { [ORDER]: v2 };
    expect(compileReaderSchemas('keeper', declared)).toBe(compileReaderSchemas('keeper', declared));
  });
});

describe("records read with the processor's reader schema (test driver)", () => {
  const order = (orderId: string, extra: Record<string, unknown> = {}) => ({
    orderId,
    eventTime: T0,
    quantity: 3,
    ...extra,
  });

  it("a processor built against v2 sees v2's defaults in v1 records, and not the field v2 removed", () => {
    const driver = new TopologyTestDriver(keeper({ [ORDER]: relative(process.cwd(), v2File) }), [
      parseSchema(JSON.stringify(v1), 'Order.v1.avsc'),
    ]);
    driver.pipe('orders', { key: 'o1', recordType: ORDER, value: order('o1', { note: 'old' }) });
    expect(driver.stateOf('keeper', 'seen', 'o1')).toEqual({
      recordType: ORDER,
      value: { orderId: 'o1', eventTime: T0, quantity: 3, currency: 'USD', priority: 5 },
    });
    expect(driver.readDeadLetters()).toHaveLength(0);
  });

  it('a processor built against v1 drops the fields a v2 writer added, and gets the default of the one it removed', () => {
    const driver = new TopologyTestDriver(keeper({ [ORDER]: v1 }), [parseSchema(JSON.stringify(v2), 'Order.v2.avsc')]);
    driver.pipe('orders', { key: 'o2', recordType: ORDER, value: order('o2', { currency: 'EUR', priority: 1 }) });
    expect(driver.stateOf('keeper', 'seen', 'o2')).toEqual({
      recordType: ORDER,
      value: { orderId: 'o2', eventTime: T0, quantity: 3, note: '' },
    });
  });

  it('without reader schemas a record is decoded as written', () => {
    const driver = new TopologyTestDriver(keeper(undefined), [parseSchema(JSON.stringify(v1), 'Order.v1.avsc')]);
    driver.pipe('orders', { key: 'o3', recordType: ORDER, value: order('o3', { note: 'kept' }) });
    expect(driver.stateOf('keeper', 'seen', 'o3')).toEqual({
      recordType: ORDER,
      value: { orderId: 'o3', eventTime: T0, quantity: 3, note: 'kept' },
    });
  });

  it('renames a field and the record type through aliases', () => {
    const renamed = {
      type: 'record',
      name: 'PurchaseOrder',
      namespace: 'agentstreams.test.evolution',
      aliases: ['Order'],
      fields: [
        { name: 'orderId', type: 'string' },
        { name: 'eventTime', type: 'long' },
        { name: 'units', type: 'long', aliases: ['quantity'] },
      ],
    };
    const driver = new TopologyTestDriver(keeper({ [ORDER]: renamed }), [
      parseSchema(JSON.stringify(v1), 'Order.v1.avsc'),
    ]);
    driver.pipe('orders', { key: 'o4', recordType: ORDER, value: order('o4') });
    expect(driver.stateOf('keeper', 'seen', 'o4')).toEqual({
      recordType: 'agentstreams.test.evolution.PurchaseOrder',
      value: { orderId: 'o4', eventTime: T0, units: 3 },
    });
  });

  it('dead-letters, with reason incompatible, a record whose writer the reader cannot resolve, and goes on', () => {
    // v2 without a default for currency cannot read v1 records, which have none.
    const strict = {
      ...v2,
      fields: (v2.fields as Array<Record<string, unknown>>).map((f) =>
        f.name === 'currency' ? { name: 'currency', type: 'string' } : f,
      ),
    };
    const driver = new TopologyTestDriver(keeper({ [ORDER]: strict }), [
      parseSchema(JSON.stringify(v1), 'Order.v1.avsc'),
    ]);
    driver.pipe('orders', { key: 'o5', recordType: ORDER, value: order('o5') });
    driver.pipe('orders', { key: 'o6', recordType: ORDER, value: order('o6') });
    const dead = driver.readDeadLetters();
    expect(dead).toHaveLength(2);
    expect(dead[0]!.headers[deadLetterHeader.errorCode]).toBe('AS_DESERIALIZE');
    expect(dead[0]!.headers[deadLetterHeader.errorReason]).toBe('incompatible');
    expect(dead[0]!.headers[deadLetterHeader.errorMessage]).toMatch(
      /agentstreams\.test\.evolution\.Order written with schema id 1 cannot be read as agentstreams\.test\.evolution\.Order \(the reader schema from an inline schema\): no matching field for default-less .*currency/,
    );
    expect(driver.stateOf('keeper', 'seen', 'o5')).toBeUndefined();
  });

  it("keeps bounded decoding against the writer and checks the reader's ranges, defaults included", () => {
    const outOfRangeDefault = {
      ...v2,
      fields: (v2.fields as Array<Record<string, unknown>>).map((f) =>
        f.name === 'priority' ? { ...f, default: 12 } : f,
      ),
    };
    const driver = new TopologyTestDriver(keeper({ [ORDER]: outOfRangeDefault }), [
      parseSchema(JSON.stringify(v1), 'Order.v1.avsc'),
    ]);
    driver.pipe('orders', { key: 'o7', recordType: ORDER, value: order('o7') });
    const good = driver.codec.encode(ORDER, order('o8'));
    // A body declaring a 2^31-byte string: refused by the writer's bounds check before avsc allocates anything.
    const hostile = Buffer.concat([good.subarray(0, 5), Buffer.from([0x80, 0x80, 0x80, 0x80, 0x10])]);
    driver.pipeRaw('orders', { key: 'o9', value: hostile });
    const dead = driver.readDeadLetters();
    expect(dead.map((d) => d.headers[deadLetterHeader.errorReason])).toEqual(['range', 'body']);
    expect(dead[0]!.headers[deadLetterHeader.errorMessage]).toMatch(
      /read as agentstreams\.test\.evolution\.Order \(reader schema from an inline schema\) is out of range: field priority is 12/,
    );
    expect(dead[1]!.headers[deadLetterHeader.errorMessage]).toMatch(/string length .* exceeds the \d+ bytes left/);
  });
});
