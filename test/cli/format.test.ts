/** cli/format.ts on its own (no service needed): truncation with "…" and the row formats. */
import { describe, expect, it } from 'vitest';
import { checkFormat, formatRows, MAX_CELL, truncate } from '../../cli/format.ts';

const words = (n: number): string => Array.from({ length: n }, (_, i) => `word${i}`).join(' ');

describe('truncate', () => {
  it('cuts at a word boundary and marks the cut with …', () => {
    const text = words(40);
    const cut = truncate(text);
    expect(cut.length).toBeLessThanOrEqual(MAX_CELL);
    expect(cut.endsWith('…')).toBe(true);
    const kept = cut.slice(0, -1);
    expect(text.startsWith(kept)).toBe(true);
    expect(text[kept.length]).toBe(' ');
    expect(truncate('short  text\nhere')).toBe('short text here');
  });

  it('cuts JSON between fields, and a single long word inside it', () => {
    const json = JSON.stringify({
      id: '0005559151-26-1000003',
      symbol: 'UMBR',
      formType: '8-K',
      items: ['2.02', '5.07', '9.01'],
      eventTime: 1767623403000,
      title: 'x'.repeat(50),
    });
    expect(truncate(json)).toBe(
      '{"id":"0005559151-26-1000003","symbol":"UMBR","formType":"8-K","items":["2.02","5.07","9.01"]…',
    );
    expect(truncate('x'.repeat(300))).toBe(`${'x'.repeat(MAX_CELL - 1)}…`);
  });
});

describe('formatRows', () => {
  const rows = [
    { id: 1, text: words(40), nested: { a: 1 } },
    { id: 22, text: 'short', nested: null },
  ];

  it('table: aligned columns, long cells cut, objects as JSON', () => {
    const [header, first, second] = formatRows(rows, 'table').split('\n');
    expect(header).toMatch(/^id {2}text\s+nested$/);
    expect(first).toMatch(/^1 {3}word0 word1 .*… {2}\{"a":1\}$/);
    expect(second).toMatch(/^22 {2}short\s*$/);
    expect(formatRows([], 'table')).toBe('(no rows)');
  });

  it('json keeps every value whole; markdown escapes pipes', () => {
    expect(JSON.parse(formatRows(rows, 'json'))).toEqual(rows);
    expect(formatRows([{ a: 'x|y' }], 'markdown')).toBe('| a |\n| --- |\n| x\\|y |');
  });

  it('checkFormat names the choices', () => {
    expect(checkFormat('json', ['table', 'json'])).toBe('json');
    expect(() => checkFormat('yaml', ['table', 'json'])).toThrow('--format takes table, json, got "yaml"');
  });
});
