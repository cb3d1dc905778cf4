import { join } from 'node:path';
import avro from 'avsc';
import { describe, expect, it } from 'vitest';
import { compileWriterChecks, decodeBody } from '../../../runtime/serde/avro.ts';
import { parseSchemaGraph, type SchemaNode } from '../../../runtime/serde/bounded.ts';
import { loadSchemas, parseSchema } from '../../../runtime/serde/schemas.ts';
import { AgentStreamsError, ErrorCode } from '../../../runtime/errors.ts';

const schemas = loadSchemas(join(import.meta.dirname, '../../../schemas'));
const bySubject = (name: string) => schemas.find((s) => s.subject === `agentstreams.${name}`)!;

function decode(name: string, value: unknown): unknown {
  const s = bySubject(name);
  const type = avro.Type.forSchema(s.schema);
  // Encoded without validation: the producer is hostile (avsc's isValid would refuse NaN only for the wrong type).
  return decodeBody(type, compileWriterChecks(s.schema), type.toBuffer(value), 1, s.subject);
}

function reason(name: string, value: unknown): unknown {
  try {
    decode(name, value);
    return 'decoded';
  } catch (error) {
    expect(error).toBeInstanceOf(AgentStreamsError);
    const e = error as AgentStreamsError;
    expect(e.code).toBe(ErrorCode.DESERIALIZE);
    return [e.details.reason, e.details.field, e.details.value, e.details.rule];
  }
}

const tick = {
  symbol: 'ACME',
  eventTime: Date.UTC(2026, 0, 5),
  price: 101.5,
  bid: 101.4,
  ask: 101.6,
  currency: 'USD',
  venue: '',
};

describe('documented value ranges', () => {
  it('refuses non-finite and out-of-range numbers, naming field, value and rule', () => {
    expect(decode('market.PriceTick', tick)).toEqual(tick);
    expect(reason('market.PriceTick', { ...tick, price: Infinity })).toEqual([
      'range',
      'price',
      'Infinity',
      '> 0, finite',
    ]);
    expect(reason('market.PriceTick', { ...tick, price: NaN })).toEqual(['range', 'price', 'NaN', '> 0, finite']);
    expect(reason('market.PriceTick', { ...tick, price: -1 })).toEqual(['range', 'price', '-1', '> 0, finite']);
    expect(reason('market.PriceTick', { ...tick, bid: -Infinity })).toEqual([
      'range',
      'bid',
      '-Infinity',
      '>= 0, finite',
    ]);
    expect(reason('market.PriceTick', { ...tick, bid: null, ask: null })).toBe('decoded');
    expect(reason('market.PriceTick', { ...tick, eventTime: Date.UTC(3000, 0, 1) })).toEqual([
      'range',
      'eventTime',
      String(Date.UTC(3000, 0, 1)),
      '>= 946684800000, <= 4102444800000',
    ]);
    expect(
      reason('market.Trade', {
        symbol: 'A',
        eventTime: tick.eventTime,
        price: 1,
        quantity: -5,
        side: 'BUY',
        tradeId: 't',
      }),
    ).toEqual(['range', 'quantity', '-5', '>= 0']);
    const finding = {
      findingId: 'f',
      agent: 'a',
      rule: 'r',
      symbol: 'S',
      portfolioId: '',
      severity: 'low',
      windowStart: tick.eventTime,
      windowEnd: tick.eventTime,
      eventTime: tick.eventTime,
      evidence: { zScore: 2 },
      summary: 's',
      sourceTopic: 't',
      sourcePartition: 0,
      sourceOffset: 0,
    };
    expect(reason('fleet.Finding', finding)).toBe('decoded');
    expect(reason('fleet.Finding', { ...finding, evidence: { zScore: NaN } })).toEqual([
      'range',
      'evidence{}',
      'NaN',
      'finite',
    ]);
    const portfolio = {
      portfolioId: 'p',
      name: 'P',
      holdings: [{ symbol: 'A', weight: 1.5 }],
      raiseAtWeight: 0.1,
      moveThresholdScale: 1,
      alertAt: 'high',
    };
    expect(reason('fleet.Portfolio', portfolio)).toEqual(['range', 'holdings[].weight', '1.5', '>= 0, <= 1, finite']);
    expect(reason('fleet.Portfolio', { ...portfolio, holdings: [], moveThresholdScale: 0 })).toEqual([
      'range',
      'moveThresholdScale',
      '0',
      '> 0, finite',
    ]);
    const filing = {
      id: 'f',
      symbol: 'A',
      formType: '4',
      items: [],
      eventTime: tick.eventTime,
      insider: { name: 'J', role: '', shares: -1, price: null, direction: 'SELL' },
      url: null,
    };
    expect(reason('market.Filing', filing)).toEqual(['range', 'insider.shares', '-1', '>= 0']);
  });

  it('gives every number of every market and fleet schema an explicit rule', () => {
    const numeric = (node: SchemaNode): boolean =>
      ['int', 'long', 'float', 'double'].includes(node.kind) ||
      (node.kind === 'union' && node.branches.some(numeric)) ||
      (node.kind === 'array' && numeric(node.items)) ||
      (node.kind === 'map' && numeric(node.values));
    const missing: string[] = [];
    const walk = (node: SchemaNode, path: string): void => {
      if (node.kind === 'record')
        for (const f of node.fields) {
          if (numeric(f.type) && f.attributes.range === undefined) missing.push(`${path}.${f.name}`);
          walk(f.type, `${path}.${f.name}`);
        }
      else if (node.kind === 'union') node.branches.forEach((b) => walk(b, path));
      else if (node.kind === 'array') walk(node.items, `${path}[]`);
      else if (node.kind === 'map') walk(node.values, `${path}{}`);
    };
    for (const s of schemas) walk(parseSchemaGraph(s.schema), s.subject);
    expect(missing).toEqual([]);
  });

  it('finite by default: a double without a rule must still be finite', () => {
    const schema = {
      type: 'record',
      name: 'D',
      fields: [
        { name: 'x', type: 'double' },
        { name: 'y', type: 'double', range: { finite: false } },
      ],
    };
    const type = avro.Type.forSchema(schema as avro.Schema);
    const checks = compileWriterChecks(schema);
    expect(() => decodeBody(type, checks, type.toBuffer({ x: 1, y: Infinity }), 1, 'D')).not.toThrow();
    expect(() => decodeBody(type, checks, type.toBuffer({ x: Infinity, y: 1 }), 1, 'D')).toThrow(
      /field x is Infinity, outside its documented range \(finite\)/,
    );
  });

  it('refuses a malformed rule when the schema is loaded', () => {
    const text = (range: unknown) =>
      JSON.stringify({ type: 'record', name: 'R', namespace: 't', fields: [{ name: 'n', type: 'long', range }] });
    expect(() => parseSchema(text({ min: 'zero' }), 'r.avsc')).toThrow(/range.min of t.R.n must be a finite number/);
    expect(() => parseSchema(text({ minimum: 0 }), 'r.avsc')).toThrow(/unknown key "minimum"/);
    expect(() => parseSchema(text({ min: 2, max: 1 }), 'r.avsc')).toThrow(/min 2 above max 1/);
  });
});
