import { describe, expect, it } from 'vitest';
import { locateJsonError, parseJson } from '../../connectors/json-text.ts';

describe('JSON errors with their position', () => {
  it('parses valid JSON as JSON.parse does', () => {
    expect(parseJson('{"a": [1, -2.5e3, "\\u00e9\\n", true, null]}')).toEqual({
      ok: true,
      value: { a: [1, -2500, 'é\n', true, null] },
    });
  });

  it.each([
    ['{"a": }', 'unexpected character "}", expected a JSON value', 1, 7],
    ['[1, 2', "unexpected end of input, expected ',' or ']' after an array element", 1, 6],
    ['', 'unexpected end of input, expected a JSON value', 1, 1],
    ['{"a": 1}\n{"b": 2}', 'unexpected character "{", expected end of input after the JSON value', 2, 1],
    ["{'a': 1}", 'unexpected character "\'", expected a property name in double quotes', 1, 2],
    ['{"a": 01}', "unexpected character \"1\", expected ',' or '}' after a property value", 1, 8],
    ['{"a": "x\ty"}', 'unescaped control character in a string (write it as \\n, \\t or \\u00XX)', 1, 9],
    ['{"a": "\\x"}', 'unexpected character "x", expected an escape (\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)', 1, 9],
    ['{\n  "a": tru\n}', 'unexpected character "\\n", expected "true"', 2, 11],
  ])('%j: %s at %i:%i', (text, reason, line, column) => {
    expect(() => JSON.parse(text)).toThrow();
    expect(locateJsonError(text)).toMatchObject({ reason, line, column });
    const parsed = parseJson(text);
    expect(parsed.ok).toBe(false);
  });
});
