import { describe, expect, it } from 'vitest';
import { parseAnalysis, parseDigest } from '../../../processors/analysis/parse.ts';

const valid = { summary: 'A move.', recommended_action: 'Check stops.', severity: 'high', confidence: 0.5 };
const reply = (value: unknown): string => JSON.stringify(value);

describe('parseAnalysis', () => {
  it('accepts exactly the requested object, also inside one markdown fence', () => {
    expect(parseAnalysis(reply(valid))).toEqual({ ok: true, value: valid });
    expect(parseAnalysis(`  \`\`\`json\n${reply(valid)}\n\`\`\`  `)).toEqual({ ok: true, value: valid });
  });

  it.each([
    ['prose', 'Looks bad.', /not a JSON object/],
    ['prose before JSON', `Sure: ${reply(valid)}`, /not a JSON object/],
    ['broken JSON', '{"summary": "x",', /not valid JSON/],
    ['an array', '[1]', /not a JSON object/],
    ['a missing key', reply({ ...valid, confidence: undefined }), /missing key\(s\) confidence/],
    ['an extra key', reply({ ...valid, note: 'x' }), /unexpected key\(s\) note/],
    ['an unknown severity', reply({ ...valid, severity: 'urgent' }), /severity must be one of/],
    ['confidence above 1', reply({ ...valid, confidence: 1.5 }), /confidence must be a number from 0 to 1/],
    ['confidence as text', reply({ ...valid, confidence: '0.5' }), /confidence must be a number/],
    ['an empty summary', reply({ ...valid, summary: '  ' }), /summary must not be empty/],
    ['a huge summary', reply({ ...valid, summary: 'x'.repeat(2_001) }), /summary is longer than 2000/],
    ['a non-string action', reply({ ...valid, recommended_action: 3 }), /recommended_action must be a string/],
  ])('rejects %s', (_, text, problem) => {
    const parsed = parseAnalysis(text);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.problem).toMatch(problem);
  });
});

describe('parseDigest', () => {
  it('accepts {summary} only', () => {
    expect(parseDigest('{"summary": " Quiet hour. "}')).toEqual({ ok: true, value: { summary: 'Quiet hour.' } });
    expect(parseDigest(reply(valid)).ok).toBe(false);
  });
});
