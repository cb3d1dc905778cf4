import { describe, expect, it } from 'vitest';
import { classifyInsertError, clickHouseCodeOf, rowHintOf } from '../../../sinks/clickhouse/insert-error.ts';

const server = (code: number, text: string): Error =>
  new Error(`Code: ${code}, e.displayText() = DB::Exception: ${text}, e.what() = DB::Exception`);
const errno = (code: string): Error => Object.assign(new Error(`connect ${code} 127.0.0.1:18123`), { code });

describe('classifyInsertError', () => {
  it('reads the code from 18.16 messages and from current clients alike', () => {
    expect(
      clickHouseCodeOf(server(252, 'Too many parts (300). Merges are processing significantly slower than inserts.')),
    ).toBe(252);
    expect(clickHouseCodeOf(Object.assign(new Error('Too many parts'), { code: '252' }))).toBe(252);
    expect(clickHouseCodeOf(errno('ECONNREFUSED'))).toBeUndefined();
  });

  it('retries what passes, isolates bad data, and stops on what no retry fixes', () => {
    expect(classifyInsertError(server(252, 'Too many parts'))).toBe('retriable');
    expect(classifyInsertError(server(241, 'Memory limit (for query) exceeded'))).toBe('retriable');
    expect(classifyInsertError(errno('ECONNREFUSED'))).toBe('retriable');
    expect(classifyInsertError(errno('ECONNRESET'))).toBe('retriable');
    expect(classifyInsertError(new Error('Timeout error.'))).toBe('retriable');
    expect(classifyInsertError(new Error('<html>502 Bad Gateway</html>'))).toBe('retriable');
    expect(classifyInsertError(server(49, "Unknown element 'zz' for type Enum8('a' = 1)"))).toBe('data');
    expect(classifyInsertError(server(27, 'Cannot parse input: expected " before: abc: (at row 2)\n'))).toBe('data');
    expect(classifyInsertError(server(60, "Table db.nope doesn't exist."))).toBe('fatal');
    expect(classifyInsertError(server(516, 'default: Authentication failed'))).toBe('fatal');
    expect(classifyInsertError(new TypeError('x is not a function'))).toBe('fatal');
  });

  it('finds the row a parse error points at', () => {
    expect(rowHintOf(server(27, 'Cannot parse input: (while read the value of key n): (at row 12)\n'))).toBe(12);
    expect(rowHintOf(server(49, 'Unknown element'))).toBeUndefined();
  });
});
