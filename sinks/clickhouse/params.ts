/**
 * Named query parameters that work on every ClickHouse we support. ClickHouse 18.16 has no server-side
 * parameters, so values are rendered as literals on the client, with the server's own `{name:Type}` placeholder
 * syntax and strict, type-checked escaping. One pass: a substituted value is never scanned again.
 */
import { AgentStreamsError, ErrorCode } from '../../runtime/errors.ts';

const intRanges: Record<string, readonly [bigint, bigint]> = {
  UInt8: [0n, 255n],
  UInt16: [0n, 65535n],
  UInt32: [0n, 4294967295n],
  UInt64: [0n, 18446744073709551615n],
  Int8: [-128n, 127n],
  Int16: [-32768n, 32767n],
  Int32: [-2147483648n, 2147483647n],
  Int64: [-9223372036854775808n, 9223372036854775807n],
};

const escapes: Record<string, string> = {
  '\\': '\\\\',
  "'": "\\'",
  '\n': '\\n',
  '\r': '\\r',
  '\t': '\\t',
  '\0': '\\0',
  '\b': '\\b',
  '\f': '\\f',
};

export type ParamValue = string | number | bigint | boolean | Date | ParamValue[];

function invalid(name: string, type: string, why: string): AgentStreamsError {
  return new AgentStreamsError(ErrorCode.QUERY_PARAM_INVALID, `Query parameter "${name}" (${type}): ${why}.`, {
    details: { name, type },
  });
}

export function quoteString(value: string): string {
  return `'${value.replace(/[\\'\n\r\t\0\b\f]/g, (c) => escapes[c] ?? c)}'`;
}

export function formatLiteral(name: string, type: string, value: unknown): string {
  if (value === null || value === undefined) throw invalid(name, type, 'a value is required');
  const range = intRanges[type];
  if (range) {
    let n: bigint;
    if (typeof value === 'bigint') n = value;
    else if (typeof value === 'number' && Number.isSafeInteger(value)) n = BigInt(value);
    else if (typeof value === 'string' && /^-?\d+$/.test(value)) n = BigInt(value);
    else throw invalid(name, type, `expected a whole number, got ${JSON.stringify(String(value))}`);
    if (n < range[0] || n > range[1]) throw invalid(name, type, `${n} is out of range`);
    return n.toString();
  }
  switch (type) {
    case 'Float32':
    case 'Float64':
      if (typeof value !== 'number' || !Number.isFinite(value)) throw invalid(name, type, 'expected a finite number');
      return String(value);
    case 'String':
      if (typeof value !== 'string') throw invalid(name, type, `expected a string, got ${typeof value}`);
      return quoteString(value);
    case 'DateTime': {
      const seconds = value instanceof Date ? Math.floor(value.getTime() / 1000) : value;
      if (typeof seconds !== 'number' || !Number.isSafeInteger(seconds) || seconds < 0 || seconds > 4294967295) {
        throw invalid(name, type, 'expected a Date or whole epoch seconds');
      }
      return `toDateTime(${seconds}, 'UTC')`;
    }
    default: {
      const inner = /^Array\((.+)\)$/.exec(type)?.[1];
      if (inner === undefined) throw invalid(name, type, 'unsupported type');
      if (!Array.isArray(value)) throw invalid(name, type, 'expected an array');
      return `[${value.map((item) => formatLiteral(name, inner, item)).join(', ')}]`;
    }
  }
}

const placeholder = /\{([A-Za-z_][A-Za-z0-9_]*):([A-Za-z0-9_()]+)\}/g;

/** Renders `{name:Type}` placeholders. Every placeholder must be bound and every parameter used. */
export function renderQuery(sql: string, params: Record<string, unknown>): string {
  const used = new Set<string>();
  const rendered = sql.replace(placeholder, (_whole, name: string, type: string) => {
    if (!Object.hasOwn(params, name)) throw invalid(name, type, 'missing');
    used.add(name);
    return formatLiteral(name, type, params[name]);
  });
  const unused = Object.keys(params).filter((key) => !used.has(key));
  if (unused.length > 0) {
    throw new AgentStreamsError(ErrorCode.QUERY_PARAM_INVALID, `Unknown query parameter(s): ${unused.join(', ')}.`, {
      details: { unused },
    });
  }
  return rendered;
}
