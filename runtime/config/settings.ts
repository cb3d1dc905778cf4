/**
 * Parsers for single settings. Each turns one raw string into a typed value or throws a message that says
 * what was expected; the loader adds which setting it was.
 */

export interface Setting<T> {
  /** Environment variable that sets it. */
  readonly env: string;
  readonly doc: string;
  readonly parse: (raw: string) => T;
  /** Used when neither the environment nor the file sets it. `undefined` with `required` makes it mandatory. */
  readonly default?: T;
  readonly required?: boolean;
  /** Never printed: shown as `***` by `redact`. */
  readonly secret?: boolean;
}

export function setting<T>(spec: Setting<T>): Setting<T> {
  return spec;
}

export const parse = {
  string(raw: string): string {
    if (raw.trim() === '') throw new Error('expected a non-empty string');
    return raw.trim();
  },

  int(min: number, max: number) {
    return (raw: string): number => {
      const value = Number(raw.trim());
      if (!Number.isInteger(value) || value < min || value > max) {
        throw new Error(`expected a whole number from ${min} to ${max}, got "${raw}"`);
      }
      return value;
    };
  },

  port(raw: string): number {
    return parse.int(1, 65535)(raw);
  },

  bool(raw: string): boolean {
    const value = raw.trim().toLowerCase();
    if (['true', '1', 'yes', 'on'].includes(value)) return true;
    if (['false', '0', 'no', 'off'].includes(value)) return false;
    throw new Error(`expected true or false, got "${raw}"`);
  },

  oneOf<const T extends string>(...choices: T[]) {
    return (raw: string): T => {
      const value = raw.trim() as T;
      if (!choices.includes(value)) throw new Error(`expected one of ${choices.join(', ')}, got "${raw}"`);
      return value;
    };
  },

  url(...protocols: string[]) {
    return (raw: string): string => {
      let url: URL;
      try {
        url = new URL(raw.trim());
      } catch {
        throw new Error(`expected a URL such as ${protocols[0]}//127.0.0.1:1234, got "${raw}"`);
      }
      if (!protocols.includes(url.protocol)) {
        throw new Error(`expected a ${protocols.join(' or ')} URL, got "${url.protocol}" in "${raw}"`);
      }
      return raw.trim().replace(/\/+$/, '');
    };
  },

  /** A comma-separated list of host:port pairs, as Kafka clients take `bootstrap.servers`. */
  hostPorts(raw: string): string[] {
    const items = raw
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    if (items.length === 0) throw new Error('expected at least one host:port');
    for (const item of items) {
      const match = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(item);
      if (!match || Number(match[2]) < 1 || Number(match[2]) > 65535) {
        throw new Error(`expected host:port, got "${item}"`);
      }
    }
    return items;
  },
} as const;
