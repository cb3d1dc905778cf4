import { describe, expect, it } from 'vitest';
import { formatLiteral, quoteString, renderQuery } from '../../../sinks/clickhouse/params.ts';
import { ErrorCode } from '../../../runtime/errors.ts';

describe('renderQuery', () => {
  it('renders typed literals', () => {
    expect(
      renderQuery('SELECT {s:String}, {n:UInt32}, {f:Float64}, {t:DateTime}, {a:Array(String)}', {
        s: "O'Brien",
        n: 7,
        f: 1.5,
        t: 60,
        a: ['x', 'y'],
      }),
    ).toBe("SELECT 'O\\'Brien', 7, 1.5, toDateTime(60, 'UTC'), ['x', 'y']");
  });

  it('escapes every character that could end a string literal', () => {
    expect(quoteString("a\\'\n\r\t\0b")).toBe("'a\\\\\\'\\n\\r\\t\\0b'");
  });

  it('never expands a placeholder that arrived inside a value', () => {
    expect(renderQuery('SELECT {a:String}, {b:String}', { a: '{b:String}', b: 'x' })).toBe("SELECT '{b:String}', 'x'");
  });

  it('refuses missing, unused and ill-typed parameters with the parameter named', () => {
    expect(() => renderQuery('SELECT {a:String}', {})).toThrow(/"a" \(String\): missing/);
    expect(() => renderQuery('SELECT 1', { extra: 1 })).toThrow(/Unknown query parameter\(s\): extra/);
    expect(() => formatLiteral('n', 'UInt8', 256)).toThrow(/out of range/);
    expect(() => formatLiteral('n', 'UInt32', '1; DROP TABLE findings')).toThrow(/expected a whole number/);
    expect(() => formatLiteral('s', 'String', 5)).toThrow(/expected a string/);
    expect(() => formatLiteral('f', 'Float64', Number.NaN)).toThrow(/finite/);
    try {
      formatLiteral('x', 'Map(String, String)', {});
    } catch (error) {
      expect((error as { code: string }).code).toBe(ErrorCode.QUERY_PARAM_INVALID);
    }
  });
});
