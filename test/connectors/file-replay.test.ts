/**
 * File replay on the real stack: JSON Lines and CSV files with bad lines among good ones. Bad lines are reported
 * with their line numbers and field paths and skipped; exactly the good lines reach Kafka. In fail mode a bad line
 * means nothing is produced.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { replayFile } from '../../connectors/file-replay.ts';
import { AgentStreamsError, ErrorCode } from '../../runtime/errors.ts';
import { config, kafkaClient, uniqueName } from '../support/stack.ts';
import { readTopic } from './read-topic.ts';

const dir = mkdtempSync(join(tmpdir(), 'replay-test-'));
const T0 = Date.UTC(2026, 0, 5, 14, 30);

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

const jsonl = [
  JSON.stringify({ type: 'PriceTick', symbol: 'ACME', eventTime: T0, price: 101.25, bid: 101.2, ask: 101.3 }),
  JSON.stringify({
    type: 'Trade',
    symbol: 'ACME',
    eventTime: '2026-01-05T14:30:01Z',
    price: 101.3,
    quantity: 200,
    side: 'BUY',
    tradeId: 'r-1',
  }),
  '',
  '{"type": "Trade", "symbol": "ACME", "eventTime": 1767623402000, "price": 101.3, }',
  JSON.stringify({
    type: 'Trade',
    symbol: 'ACME',
    eventTime: T0 + 3000,
    price: 'high',
    quantity: 1.5,
    tradeId: 'r-bad',
  }),
  JSON.stringify({
    type: 'NewsItem',
    id: 'r-news-1',
    symbols: ['ACME', 'BOLT'],
    headline: 'Acme Corp wins contract',
    source: 'Reuters',
    eventTime: T0 + 4000,
  }),
  JSON.stringify({
    type: 'Filing',
    id: 'r-filing-1',
    symbol: 'BOLT',
    formType: '4',
    eventTime: T0 + 5000,
    insider: { name: 'Sam Patel', role: 'CFO', shares: 1200, price: 55.5, direction: 'SELL' },
  }),
].join('\n');

describe('file replay', () => {
  it('replays JSON Lines: bad lines reported with line numbers and field paths, good lines produced', async () => {
    const topic = uniqueName('replay-jsonl');
    const rejects = join(dir, 'rejects.jsonl');
    const summary = await replayFile(config, {
      file: file('events.jsonl', `${jsonl}\n`),
      topic,
      rejectsFile: rejects,
      progress: false,
    });
    expect(summary.rows).toBe(6);
    expect(summary.produced).toBe(4);
    expect(summary.messages).toBe(5); // the story about ACME and BOLT is one record per symbol
    expect(summary.invalidCount).toBe(2);
    expect(summary.invalid.map((r) => r.line)).toEqual([4, 5]);
    expect(summary.invalid[0]!.problems[0]!.message).toMatch(
      /not valid JSON: unexpected character "}", expected a property name .* at line 4, column 81 \(position 80\)$/,
    );
    expect(summary.invalid[1]!.problems.map((p) => p.path)).toEqual(['price', 'quantity']);
    expect(summary.byType).toEqual({ PriceTick: 1, Trade: 1, NewsItem: 1, Filing: 1 });
    // Every rejected row is kept, with its raw text, for fixing and replaying.
    const rejected = readFileSync(rejects, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { line: number; raw: string });
    expect(rejected.map((r) => r.line)).toEqual([4, 5]);
    expect(rejected[1]!.raw).toContain('r-bad');

    const records = await readTopic(kafkaClient(), topic);
    expect(records.map((r) => `${r.recordType.split('.').pop()}:${r.key}`).sort()).toEqual([
      'Filing:BOLT',
      'NewsItem:ACME',
      'NewsItem:BOLT',
      'PriceTick:ACME',
      'Trade:ACME',
    ]);
    const trade = records.find((r) => r.recordType.endsWith('Trade'))!;
    expect(trade.value).toMatchObject({ tradeId: 'r-1', eventTime: T0 + 1000, quantity: 200 });
    expect(records.find((r) => r.recordType.endsWith('Filing'))!.value.insider).toMatchObject({
      name: 'Sam Patel',
      shares: 1200,
      direction: 'SELL',
    });
  });

  it('replays CSV with quoted cells, array and nested columns; a bad row is reported with its line', async () => {
    const topic = uniqueName('replay-csv');
    const csv = [
      'type,symbol,eventTime,price,quantity,side,tradeId,id,formType,items,insider.name,insider.shares,insider.direction',
      'Trade,ACME,1767623400000,10.5,100,BUY,c-1,,,,,,',
      'Trade,ACME,2026-01-05T14:30:01Z,10.55,abc,SELL,c-2,,,,,,',
      'Trade,ACME,1767623402000,10.6,300,SELL,"c-3, ""quoted""",,,,,,',
      'Filing,BOLT,1767623403000,,,,,f-1,8-K,2.02;5.02,,,',
      'Filing,BOLT,1767623404000,,,,,f-2,4,,"Riley',
      'Chen",5000,BUY',
      'Trade,ACME,1767623405000,10.7,100,BUY',
    ].join('\r\n');
    const summary = await replayFile(config, { file: file('events.csv', csv), topic, progress: false });
    expect(summary.rows).toBe(6);
    expect(summary.produced).toBe(4);
    expect(summary.invalid.map((r) => [r.line, r.problems.map((p) => p.path).join()])).toEqual([
      [3, 'quantity'],
      [8, ''],
    ]);
    expect(summary.invalid[1]!.problems[0]!.message).toBe('has 6 cells, the header has 13 columns');

    const records = await readTopic(kafkaClient(), topic);
    const values = records.map((r) => r.value);
    expect(values.map((v) => v.tradeId ?? v.id).sort()).toEqual(['c-1', 'c-3, "quoted"', 'f-1', 'f-2']);
    expect(values.find((v) => v.id === 'f-1')).toMatchObject({ items: ['2.02', '5.02'], insider: null });
    expect(values.find((v) => v.id === 'f-2')!.insider).toMatchObject({
      name: 'Riley\nChen',
      shares: 5000,
      direction: 'BUY',
      price: null,
    });
  });

  it('in fail mode checks the whole file first and produces nothing when a row is invalid', async () => {
    const topic = uniqueName('replay-fail');
    const error = await replayFile(config, {
      file: file('fail.jsonl', jsonl),
      topic,
      onInvalid: 'fail',
      progress: false,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AgentStreamsError);
    expect((error as AgentStreamsError).code).toBe(ErrorCode.RECORD_INVALID);
    expect((error as AgentStreamsError).message).toMatch(
      /^2 of 6 rows of .* are invalid \(first: line 4: .*\); nothing was produced\.$/,
    );
    expect(((error as AgentStreamsError).details.invalid as Array<{ line: number }>).map((r) => r.line)).toEqual([
      4, 5,
    ]);
    const admin = kafkaClient().admin();
    await admin.connect();
    expect(await admin.listTopics()).not.toContain(topic);
    await admin.disconnect();
  });

  it('takes --type for files without a type column, and refuses rows that disagree with it', async () => {
    const rows = [
      JSON.stringify({ symbol: 'ACME', eventTime: T0, price: 1.5 }),
      JSON.stringify({ type: 'Trade', symbol: 'ACME', eventTime: T0, price: 1.5 }),
      JSON.stringify({ symbol: 'acme', eventTime: T0, price: 1.5 }),
    ].join('\n');
    const summary = await replayFile(config, {
      file: file('ticks.ndjson', rows),
      type: 'PriceTick',
      dryRun: true,
      progress: false,
    });
    expect(summary.produced).toBe(1);
    expect(summary.topic).toBeUndefined();
    expect(summary.invalid.map((r) => [r.line, r.problems[0]!.path, r.problems[0]!.message])).toEqual([
      [2, 'type', 'says Trade, but the replay was started with --type PriceTick'],
      [3, 'symbol', '"acme" is not an upper-case ticker like ACME or BRK.B'],
    ]);
  });
});
