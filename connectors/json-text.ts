/**
 * JSON parsing that says where the text is wrong. V8's messages only sometimes carry a position ("Unexpected
 * token '}', ... is not valid JSON" has none), and a client fixing a request or a replay file needs line and column.
 * The fast path is JSON.parse; the scanner below runs only on text that has already failed, to find the spot.
 */

export interface JsonSyntaxError {
  /** What is wrong, e.g. `expected ',' or '}' after a property value`. */
  reason: string;
  /** Index of the offending character in the text (0-based, in UTF-16 code units as JavaScript counts). */
  position: number;
  /** 1-based. */
  line: number;
  /** 1-based. */
  column: number;
}

export type JsonParse = { ok: true; value: unknown } | { ok: false; error: JsonSyntaxError };

export function parseJson(text: string): JsonParse {
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (error) {
    return {
      ok: false,
      error: locateJsonError(text) ?? { reason: (error as Error).message, position: 0, line: 1, column: 1 },
    };
  }
}

export function describeJsonError(error: JsonSyntaxError): string {
  return `${error.reason} at line ${error.line}, column ${error.column} (position ${error.position})`;
}

class Stop {
  constructor(
    readonly reason: string,
    readonly position: number,
  ) {}
}

/** Finds the first syntax error in `text` by the JSON grammar (RFC 8259); undefined if it finds none. */
export function locateJsonError(text: string): JsonSyntaxError | undefined {
  let i = 0;
  const shown = (): string => (i >= text.length ? 'end of input' : `character ${JSON.stringify(text[i])}`);
  const fail = (expected: string): never => {
    throw new Stop(`unexpected ${shown()}, expected ${expected}`, i);
  };
  const ws = (): void => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i += 1;
  };
  const literal = (word: string): void => {
    for (const ch of word) {
      if (text[i] !== ch) fail(`"${word}"`);
      i += 1;
    }
  };
  const string = (): void => {
    i += 1; // opening quote
    for (;;) {
      if (i >= text.length) fail("a closing '\"'");
      const code = text.charCodeAt(i);
      if (code === 0x22) {
        i += 1;
        return;
      }
      if (code < 0x20) throw new Stop('unescaped control character in a string (write it as \\n, \\t or \\u00XX)', i);
      if (code === 0x5c) {
        i += 1;
        const esc = text[i];
        if (esc === 'u') {
          for (let k = 1; k <= 4; k += 1) {
            if (!/[0-9a-fA-F]/.test(text[i + k] ?? '')) {
              i += k;
              fail('four hex digits after \\u');
            }
          }
          i += 5;
          continue;
        }
        if (esc === undefined || !'"\\/bfnrt'.includes(esc))
          fail('an escape (\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)');
      }
      i += 1;
    }
  };
  const digits = (): void => {
    if (!/[0-9]/.test(text[i] ?? '')) fail('a digit');
    while (/[0-9]/.test(text[i] ?? '')) i += 1;
  };
  const number = (): void => {
    if (text[i] === '-') i += 1;
    if (text[i] === '0') i += 1;
    else digits();
    if (text[i] === '.') {
      i += 1;
      digits();
    }
    if (text[i] === 'e' || text[i] === 'E') {
      i += 1;
      if (text[i] === '+' || text[i] === '-') i += 1;
      digits();
    }
  };
  const value = (depth: number): void => {
    if (depth > 512) throw new Stop('nesting deeper than 512 levels', i);
    ws();
    const ch = text[i];
    if (ch === '{') {
      i += 1;
      ws();
      if (text[i] === '}') {
        i += 1;
        return;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail('a property name in double quotes');
        string();
        ws();
        if (text[i] !== ':') fail("':' after a property name");
        i += 1;
        value(depth + 1);
        ws();
        if (text[i] === ',') {
          i += 1;
          continue;
        }
        if (text[i] === '}') {
          i += 1;
          return;
        }
        fail("',' or '}' after a property value");
      }
    }
    if (ch === '[') {
      i += 1;
      ws();
      if (text[i] === ']') {
        i += 1;
        return;
      }
      for (;;) {
        value(depth + 1);
        ws();
        if (text[i] === ',') {
          i += 1;
          continue;
        }
        if (text[i] === ']') {
          i += 1;
          return;
        }
        fail("',' or ']' after an array element");
      }
    }
    if (ch === '"') return string();
    if (ch === 't') return literal('true');
    if (ch === 'f') return literal('false');
    if (ch === 'n') return literal('null');
    if (ch === '-' || (ch !== undefined && ch >= '0' && ch <= '9')) return number();
    fail('a JSON value');
  };
  try {
    value(0);
    ws();
    if (i < text.length) fail('end of input after the JSON value');
    return undefined;
  } catch (error) {
    if (!(error instanceof Stop)) throw error;
    let line = 1;
    let lineStart = 0;
    for (let k = 0; k < error.position && k < text.length; k += 1) {
      if (text[k] === '\n') {
        line += 1;
        lineStart = k + 1;
      }
    }
    return { reason: error.reason, position: error.position, line, column: error.position - lineStart + 1 };
  }
}
