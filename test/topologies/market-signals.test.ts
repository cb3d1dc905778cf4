/**
 * The market fleet reads with its reader schemas (schemas/*.avsc, declared per processor in
 * topologies/market-signals.ts): a record an older producer wrote, before a field with a default existed, reaches the
 * processor with that default, as the processor's code expects. Decoded as written, such a record would lack the
 * field: portfolio-exposure would take a finding without `portfolioId` for a portfolio finding and drop it, and the
 * filings agent would fail on an 8-K without `items` (a dead letter).
 */
import { join } from 'node:path';
import avro from 'avsc';
import { describe, expect, it } from 'vitest';
import { loadSchemas, parseSchema, type SchemaFile } from '../../runtime/index.ts';
import { TopologyTestDriver } from '../../runtime/testing/index.ts';
import { marketSignals, marketTopics } from '../../topologies/market-signals.ts';
import { findingId } from '../../processors/finding.ts';
import { portfolios as portfoliosTable } from '../../processors/portfolio-exposure.ts';
import { FilingType, FindingType } from '../../schemas/generated/types.ts';

const current = loadSchemas(join(import.meta.dirname, '../../schemas'));
const T0 = Date.UTC(2026, 0, 5, 14, 30);
const t = marketTopics({ application: 'm' });

/** An earlier version of a record type: the current schema without the named fields (each has a default now). */
function without(recordType: string, fields: readonly string[]): SchemaFile {
  const now = current.find((s) => s.subject === recordType)!;
  const schema = now.schema as { fields: Array<{ name: string }> };
  const missing = fields.filter((name) => !schema.fields.some((f) => f.name === name));
  if (missing.length > 0) throw new Error(`${recordType} has no field ${missing.join(', ')}`);
  const older = { ...schema, fields: schema.fields.filter((f) => !fields.includes(f.name)) };
  return parseSchema(JSON.stringify(older), `${recordType}.older.avsc`);
}

/**
 * A driver whose writer schemas are the older version (id 1) and the current ones (ids 2…): the fleet writes with
 * the current version, as a member does after `schemas register`, and `older` writes what an older producer wrote.
 */
function fleetWith(older: SchemaFile) {
  const d = new TopologyTestDriver(marketSignals({ application: 'm' }), [older, ...current], {
    services: { analysis: () => new Map() },
  });
  const type = avro.Type.forSchema(older.schema);
  const header = Buffer.from([0, 0, 0, 0, 1]); // magic byte, schema id 1
  return {
    d,
    pipeOlder(topic: string, key: string, value: Record<string, unknown>): void {
      d.pipeRaw(topic, { key, value: Buffer.concat([header, type.toBuffer(value)]), timestamp: T0 });
    },
  };
}

describe('the market fleet reads older records with its reader schemas', () => {
  it('a finding written before portfolioId and evidence existed is a market finding to portfolio-exposure', () => {
    const { d, pipeOlder } = fleetWith(without(FindingType, ['portfolioId', 'evidence']));
    d.setTable(portfoliosTable, [
      {
        portfolioId: 'income',
        name: 'Income',
        holdings: [{ symbol: 'ACME', weight: 0.5 }],
        raiseAtWeight: 0.1,
        moveThresholdScale: 1,
        alertAt: 'high',
      },
    ]);
    const windowStart = T0 - 60_000;
    pipeOlder(t.findings.name, 'ACME', {
      findingId: findingId('news', 'negative-story', 'ACME', '', windowStart),
      agent: 'news',
      rule: 'negative-story',
      symbol: 'ACME',
      severity: 'medium',
      windowStart,
      windowEnd: T0,
      eventTime: T0,
      summary: 'Material negative story on ACME',
      sourceTopic: t.news.name,
      sourcePartition: 0,
      sourceOffset: 7,
    });
    expect(d.readDeadLetters()).toEqual([]);
    const out = d.readOutput(t.portfolioFindings).map((r) => r.value);
    // Half the portfolio in ACME (above raiseAtWeight): one level up; evidence is the default {} plus the weight.
    expect(out.map((f) => [f.portfolioId, f.symbol, f.severity, f.evidence])).toEqual([
      ['income', 'ACME', 'high', { weight: 0.5 }],
    ]);
    expect(out[0]!.findingId).toBe(findingId('news', 'negative-story', 'ACME', 'income', windowStart));
  });

  it('an 8-K written before items existed reaches the filings agent with no items: no finding, no dead letter', () => {
    const { d, pipeOlder } = fleetWith(without(FilingType, ['items', 'insider', 'url']));
    pipeOlder(t.filings.name, 'ACME', { id: 'f-1', symbol: 'ACME', formType: '8-K', eventTime: T0 });
    expect(d.readDeadLetters()).toEqual([]);
    expect(d.readOutput(t.findings)).toEqual([]);
    // The same agent on a current 8-K with items: the topology is live, the silence above is the default's.
    d.pipe(t.filings, {
      key: 'ACME',
      value: { id: 'f-2', symbol: 'ACME', formType: '8-K', eventTime: T0, items: ['4.02'], insider: null, url: null },
    });
    expect(d.readOutput(t.findings).map((r) => r.value.rule)).toEqual(['8-K-4.02']);
  });
});
