/** cli/args.ts on its own (no service needed): positional arguments, whole numbers, "did you mean". */
import { describe, expect, it } from 'vitest';
import { closest, expectPositionals, wholeNumber } from '../../cli/args.ts';

describe('expectPositionals', () => {
  it('names what is missing and what is extra', () => {
    expect(expectPositionals('sink', ['t.ts'], ['topology-file'])).toEqual(['t.ts']);
    expect(() => expectPositionals('sink', [], ['topology-file'])).toThrow('sink needs <topology-file>');
    expect(() => expectPositionals('sink', ['t.ts', 'x'], ['topology-file'])).toThrow(
      'sink takes 1 argument (topology-file), got extra "x"',
    );
    expect(() => expectPositionals('migrate', ['now'], [])).toThrow('migrate takes no arguments, got extra "now"');
    expect(expectPositionals('lag', [], ['[group]'])).toEqual([]);
  });
});

describe('wholeNumber and closest', () => {
  it('accepts whole numbers in bounds only', () => {
    expect(wholeNumber('max', '12', 1)).toBe(12);
    for (const bad of ['0', '-1', '1.5', 'x', ''])
      expect(() => wholeNumber('max', bad, 1)).toThrow(`--max takes a whole number from 1, got "${bad}"`);
  });

  it('suggests a near spelling, not a far one', () => {
    expect(closest('portfolo', ['portfolio', 'since', 'format'])).toBe('portfolio');
    expect(closest('zzz', ['portfolio', 'since', 'format'])).toBeUndefined();
  });
});
