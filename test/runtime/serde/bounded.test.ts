import { join } from 'node:path';
import avro from 'avsc';
import { describe, expect, it } from 'vitest';
import {
  BoundsViolation,
  compileBoundsCheck,
  parseSchemaGraph,
  type SchemaNode,
} from '../../../runtime/serde/bounded.ts';
import { compileWriterChecks, decodeBody } from '../../../runtime/serde/avro.ts';
import { loadSchemas } from '../../../runtime/serde/schemas.ts';
import { AgentStreamsError, ErrorCode } from '../../../runtime/errors.ts';
import { minimal, varint } from '../../support/avro-bytes.ts';

const schemas = loadSchemas(join(import.meta.dirname, '../../../schemas'));

interface Target {
  path: string;
  kind: 'array' | 'map' | 'string' | 'bytes';
  /** Valid bytes up to the target's length or count. */
  prefix: Buffer;
}

/** Every array, map, string and bytes field reachable in `node`, with the valid bytes that lead up to it. */
function targets(node: SchemaNode, path: string): Target[] {
  switch (node.kind) {
    case 'string':
    case 'bytes':
      return [{ path, kind: node.kind, prefix: Buffer.alloc(0) }];
    case 'array':
      return [
        { path, kind: 'array', prefix: Buffer.alloc(0) },
        ...targets(node.items, `${path}[]`).map((t) => ({ ...t, prefix: Buffer.concat([varint(1), t.prefix]) })),
      ];
    case 'map':
      return [
        { path, kind: 'map', prefix: Buffer.alloc(0) },
        { path: `${path} key`, kind: 'string', prefix: varint(1) },
        ...targets(node.values, `${path}{}`).map((t) => ({
          ...t,
          prefix: Buffer.concat([varint(1), varint(0), t.prefix]),
        })),
      ];
    case 'union':
      return node.branches.flatMap((b, i) =>
        targets(b, path).map((t) => ({ ...t, prefix: Buffer.concat([varint(i), t.prefix]) })),
      );
    case 'record':
      return node.fields.flatMap((f, i) =>
        targets(f.type, path ? `${path}.${f.name}` : f.name).map((t) => ({
          ...t,
          prefix: Buffer.concat([...node.fields.slice(0, i).map((g) => minimal(g.type)), t.prefix]),
        })),
      );
    default:
      return [];
  }
}

const violation = (check: (b: Buffer) => void, body: Buffer): string => {
  try {
    check(body);
  } catch (error) {
    expect(error).toBeInstanceOf(BoundsViolation);
    return (error as Error).message;
  }
  throw new Error(`accepted ${body.toString('hex')}`);
};

describe('bounded Avro decoding', () => {
  it('finds every array, map, string and bytes field of every project schema', () => {
    const all = schemas.flatMap((s) => targets(parseSchemaGraph(s.schema), '').map((t) => `${s.subject}.${t.path}`));
    // A sample of what the generator must reach, nested ones included.
    expect(all).toEqual(
      expect.arrayContaining([
        'agentstreams.market.NewsItem.symbols',
        'agentstreams.market.Filing.insider.name',
        'agentstreams.fleet.Portfolio.holdings[].symbol',
        'agentstreams.fleet.Digest.bySeverity key',
      ]),
    );
    expect(all.length).toBeGreaterThan(40);
  });

  for (const s of schemas) {
    it(`refuses length and count bombs in every field of ${s.subject} before avsc allocates`, () => {
      const graph = parseSchemaGraph(s.schema);
      const check = compileBoundsCheck(graph);
      // Padding after the bomb lets the blocks around a nested target pass, so that the target's own check speaks.
      const pad = Buffer.alloc(64);
      for (const t of targets(graph, '')) {
        const at = t.prefix.length;
        if (t.kind === 'array' || t.kind === 'map') {
          expect(violation(check, Buffer.concat([t.prefix, varint(500_000_000), pad])), t.path).toBe(
            `${t.kind} block count 500000000 exceeds the 64 bytes left at offset ${at} (field ${t.path})`,
          );
          // A negative count announces a byte size: both must fit what is left.
          expect(violation(check, Buffer.concat([t.prefix, varint(-500_000_000), varint(100), pad])), t.path).toMatch(
            /block byte size 100 .* is not within the 64 bytes left/,
          );
          expect(violation(check, Buffer.concat([t.prefix, varint(-500_000_000), varint(2), pad])), t.path).toMatch(
            /block count 500000000 exceeds the 2 bytes left/,
          );
        } else {
          expect(violation(check, Buffer.concat([t.prefix, varint(2 ** 40), pad])), t.path).toBe(
            `${t.kind} length 1099511627776 exceeds the 64 bytes left at offset ${at} (field ${t.path})`,
          );
          expect(violation(check, Buffer.concat([t.prefix, varint(-3), pad])), t.path).toBe(
            `${t.kind} length -3 at offset ${at} is negative (field ${t.path})`,
          );
        }
      }
    });

    it(`decodes every valid ${s.subject} exactly as avsc does, and refuses every truncation of it`, () => {
      const type = avro.Type.forSchema(s.schema);
      const check = compileBoundsCheck(s.schema);
      for (let i = 0; i < 200; i += 1) {
        const body = type.toBuffer(type.random());
        expect(() => check(body)).not.toThrow();
        expect(type.fromBuffer(body)).toEqual(type.fromBuffer(Buffer.from(body)));
        if (i < 20)
          for (let cut = 0; cut < body.length; cut += 1)
            expect(() => check(body.subarray(0, cut)), `${cut}/${body.length}`).toThrow(BoundsViolation);
        expect(violation(check, Buffer.concat([body, Buffer.from([0])]))).toBe(
          `1 trailing bytes after the record at offset ${body.length}`,
        );
      }
    });
  }

  it('turns the NewsItem bomb into the deserialize error the runtime dead-letters', () => {
    const news = schemas.find((s) => s.subject === 'agentstreams.market.NewsItem')!;
    const body = Buffer.concat([Buffer.from([0x02, 0x61]), varint(500_000_000)]);
    const error = (() => {
      try {
        decodeBody(avro.Type.forSchema(news.schema), compileWriterChecks(news.schema), body, 7, news.subject);
      } catch (e) {
        return e as AgentStreamsError;
      }
      throw new Error('decoded a bomb');
    })();
    expect(error).toBeInstanceOf(AgentStreamsError);
    expect(error.code).toBe(ErrorCode.DESERIALIZE);
    expect(error.details.reason).toBe('body');
    expect(error.message).toContain('array block count 500000000 exceeds the 0 bytes left at offset 2 (field symbols)');
  });

  it('accepts blocks with a negative count and their exact byte size, and refuses a wrong size', () => {
    const news = schemas.find((s) => s.subject === 'agentstreams.market.NewsItem')!;
    const type = avro.Type.forSchema(news.schema);
    const check = compileBoundsCheck(news.schema);
    const value = {
      id: 'a',
      symbols: ['ACME', 'BOLT'],
      headline: 'h',
      body: '',
      source: 's',
      eventTime: 1_767_225_600_000,
      url: null,
    };
    const items = Buffer.concat(['ACME', 'BOLT'].map((x) => Buffer.concat([varint(x.length), Buffer.from(x)])));
    const tail = type.toBuffer(value).subarray(2 + 1 + items.length + 1);
    const blocked = Buffer.concat([
      Buffer.from([0x02, 0x61]),
      varint(-2),
      varint(items.length),
      items,
      varint(0),
      tail,
    ]);
    expect(() => check(blocked)).not.toThrow();
    expect(type.fromBuffer(blocked)).toEqual(type.fromBuffer(type.toBuffer(value)));
    const wrong = Buffer.concat([
      Buffer.from([0x02, 0x61]),
      varint(-2),
      varint(items.length - 1),
      items,
      varint(0),
      tail,
    ]);
    expect(violation(check, wrong)).toMatch(
      /array block at offset 2 declares 9 bytes but its items take 10 \(field symbols\)/,
    );
  });

  it('refuses bad union and enum indexes, oversized and unfinished varints', () => {
    const trade = schemas.find((s) => s.subject === 'agentstreams.market.Trade')!;
    const check = compileBoundsCheck(trade.schema);
    const head = Buffer.concat([varint(1), Buffer.from('A'), varint(1_767_225_600_000), Buffer.alloc(8), varint(5)]);
    expect(violation(check, Buffer.concat([head, varint(3), varint(1), Buffer.from('t')]))).toBe(
      `enum index 3 at offset ${head.length} is not one of the 3 symbols (field side)`,
    );
    expect(violation(check, Buffer.concat([head, varint(-1), varint(1), Buffer.from('t')]))).toMatch(
      /enum index -1 .* not one of the 3 symbols/,
    );
    const filing = schemas.find((s) => s.subject === 'agentstreams.market.Filing')!;
    const fcheck = compileBoundsCheck(filing.schema);
    const fhead = Buffer.concat([varint(0), varint(0), varint(0), varint(0), varint(1_767_225_600_000)]);
    expect(violation(fcheck, Buffer.concat([fhead, varint(2), varint(0)]))).toMatch(
      /union branch index 2 at offset \d+ is not one of the 2 branches \(field insider\)/,
    );
    expect(violation(fcheck, Buffer.concat([fhead, varint(-1), varint(0)]))).toMatch(/union branch index -1/);
    // An 11-byte varint, and one that runs off the end.
    expect(
      violation(check, Buffer.concat([varint(1), Buffer.from('A'), Buffer.alloc(10, 0xff), Buffer.from([1])])),
    ).toBe('long at offset 2 is a varint longer than 10 bytes (field eventTime)');
    expect(violation(check, Buffer.concat([varint(1), Buffer.from('A'), Buffer.from([0xff, 0xff])]))).toBe(
      'long at offset 2 runs past the end of the 4-byte body (field eventTime)',
    );
    expect(violation(check, Buffer.from([0xff, 0xff, 0xff, 0xff, 0x7f]))).toMatch(
      /string length -?\d+ .*(negative|exceeds)/,
    );
  });

  it('caps records nested by a recursive schema', () => {
    const schema = { type: 'record', name: 'Node', fields: [{ name: 'next', type: ['null', 'Node'] }] };
    const check = compileBoundsCheck(schema, { maxDepth: 64, maxZeroByteItems: 100 });
    const nested = (levels: number): Buffer => Buffer.concat([Buffer.alloc(levels, 0x02), Buffer.from([0x00])]);
    expect(() => check(nested(60))).not.toThrow();
    expect(avro.Type.forSchema(schema as avro.Schema).fromBuffer(nested(60))).toBeDefined();
    expect(violation(check, nested(100_000))).toBe('records nest deeper than 64 levels at offset 65');
  });

  it('caps items that take no bytes, which the bytes cannot bound', () => {
    const schema = {
      type: 'record',
      name: 'Nulls',
      fields: [
        { name: 'nothing', type: { type: 'array', items: 'null' } },
        { name: 'empties', type: { type: 'array', items: { type: 'record', name: 'Empty', fields: [] } } },
      ],
    };
    const check = compileBoundsCheck(schema, { maxDepth: 64, maxZeroByteItems: 1000 });
    expect(() => check(Buffer.concat([varint(600), varint(0), varint(400), varint(0)]))).not.toThrow();
    expect(violation(check, Buffer.concat([varint(600), varint(0), varint(401), varint(0)]))).toBe(
      'array block count 401 at offset 3 takes the items that can be 0 bytes long past the limit of 1000 per record (field empties)',
    );
    expect(violation(check, Buffer.concat([varint(500_000_000), varint(0), varint(0)]))).toMatch(
      /array block count 500000000 at offset 0 takes the items/,
    );
  });

  it('checks fixed sizes and booleans', () => {
    const schema = {
      type: 'record',
      name: 'F',
      fields: [
        { name: 'flag', type: 'boolean' },
        { name: 'hash', type: { type: 'fixed', name: 'H', size: 16 } },
      ],
    };
    const check = compileBoundsCheck(schema);
    expect(() => check(Buffer.concat([Buffer.from([1]), Buffer.alloc(16)]))).not.toThrow();
    expect(violation(check, Buffer.concat([Buffer.from([1]), Buffer.alloc(15)]))).toBe(
      'fixed H needs 16 bytes but 15 are left at offset 1 (field hash)',
    );
    expect(violation(check, Buffer.concat([Buffer.from([2]), Buffer.alloc(16)]))).toBe(
      'boolean byte 2 at offset 0 is neither 0 nor 1 (field flag)',
    );
  });

  it('puts no part of the schema into the generated code', () => {
    const evil = { type: 'record', name: 'E', fields: [{ name: "x'); throw new Error('pwned'); ('", type: 'string' }] };
    const check = compileBoundsCheck(evil);
    expect(() => check(Buffer.from([0]))).not.toThrow();
    expect(violation(check, varint(5))).toContain("(field x'); throw new Error('pwned'); (')");
  });
});
