/**
 * Value ranges declared in the schemas themselves: a field's custom attribute
 * `"range": { "min": 0, "exclusiveMin": true, "max": …, "exclusiveMax": …, "finite": … }` bounds every number the
 * field holds (through unions, array items and map values, not into nested records, whose fields carry their own
 * rules). A float or double must be finite unless its rule says `"finite": false`, with or without a rule.
 * Compiled once per writer schema into a function that checks a decoded value; see docs/schemas.md.
 */
import { parseSchemaGraph, type FieldNode, type SchemaNode } from './bounded.ts';

export interface RangeRule {
  min?: number;
  max?: number;
  exclusiveMin?: boolean;
  exclusiveMax?: boolean;
  /** Whether the value must be finite (not NaN, not ±Infinity); `true` by default. */
  finite?: boolean;
}

/** A decoded value outside its field's documented range. */
export class RangeViolation extends Error {
  constructor(
    readonly field: string,
    readonly value: number,
    readonly rule: string,
  ) {
    super(`field ${field} is ${String(value)}, outside its documented range (${rule})`);
    this.name = 'RangeViolation';
  }
}

const ruleKeys = new Set(['min', 'max', 'exclusiveMin', 'exclusiveMax', 'finite']);

/** Reads a field's `range` attribute; throws with a reason when it is malformed. */
export function rangeRuleOf(field: FieldNode, recordName: string): RangeRule | undefined {
  const raw = field.attributes.range;
  if (raw === undefined) return undefined;
  const at = `${recordName}.${field.name}`;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    throw new Error(`range of ${at} must be an object like {"min": 0}.`);
  const rule = raw as Record<string, unknown>;
  for (const [key, value] of Object.entries(rule)) {
    if (!ruleKeys.has(key))
      throw new Error(`range of ${at} has an unknown key "${key}" (known: ${[...ruleKeys].join(', ')}).`);
    if ((key === 'min' || key === 'max') && (typeof value !== 'number' || !Number.isFinite(value)))
      throw new Error(`range.${key} of ${at} must be a finite number.`);
    if (key !== 'min' && key !== 'max' && typeof value !== 'boolean')
      throw new Error(`range.${key} of ${at} must be true or false.`);
  }
  if (typeof rule.min === 'number' && typeof rule.max === 'number' && rule.min > rule.max)
    throw new Error(`range of ${at} has min ${rule.min} above max ${rule.max}.`);
  if (!numericLeaves(field.type)) throw new Error(`range of ${at} is on a field that holds no numbers.`);
  return rule as RangeRule;
}

function numericLeaves(node: SchemaNode): boolean {
  switch (node.kind) {
    case 'int':
    case 'long':
    case 'float':
    case 'double':
      return true;
    case 'union':
      return node.branches.some(numericLeaves);
    case 'array':
      return numericLeaves(node.items);
    case 'map':
      return numericLeaves(node.values);
    default:
      return false;
  }
}

export function describeRule(rule: RangeRule): string {
  const parts: string[] = [];
  if (rule.min !== undefined) parts.push(`${rule.exclusiveMin ? '>' : '>='} ${rule.min}`);
  if (rule.max !== undefined) parts.push(`${rule.exclusiveMax ? '<' : '<='} ${rule.max}`);
  if (rule.finite !== false) parts.push('finite');
  return parts.join(', ');
}

type Check = (value: unknown) => void;

function numberCheck(field: string, rule: RangeRule, floating: boolean): Check | null {
  const { min, max, exclusiveMin = false, exclusiveMax = false } = rule;
  const finite = floating && rule.finite !== false;
  if (min === undefined && max === undefined && !finite) return null;
  const text = describeRule(floating ? rule : { ...rule, finite: false });
  const lo = min ?? Number.NEGATIVE_INFINITY;
  const hi = max ?? Number.POSITIVE_INFINITY;
  return (value) => {
    const v = value as number;
    // NaN fails every comparison, so it is caught by `!(…)` whenever a bound or finiteness is asked for.
    if (finite && !Number.isFinite(v)) throw new RangeViolation(field, v, text);
    if (!(exclusiveMin ? v > lo : v >= lo) || !(exclusiveMax ? v < hi : v <= hi))
      throw new RangeViolation(field, v, text);
  };
}

/** Checks of the numbers `node` holds under field path `path`, or null when nothing there needs checking. */
function compileNode(
  node: SchemaNode,
  path: string,
  rule: RangeRule,
  records: Map<SchemaNode, { check?: Check | null }>,
): Check | null {
  switch (node.kind) {
    case 'int':
    case 'long':
      return numberCheck(path, rule, false);
    case 'float':
    case 'double':
      return numberCheck(path, rule, true);
    case 'union': {
      const numeric = node.branches.filter(
        (b) => b.kind === 'int' || b.kind === 'long' || b.kind === 'float' || b.kind === 'double',
      );
      const numberBranch =
        numeric.length === 0
          ? null
          : compileNode(
              numeric.some((b) => b.kind === 'float' || b.kind === 'double') ? { kind: 'double' } : { kind: 'long' },
              path,
              rule,
              records,
            );
      const others = node.branches.filter((b) => b.kind === 'record' || b.kind === 'array' || b.kind === 'map');
      // Unwrapped unions (avsc's default) hold at most one record, array or map branch, so the value says which.
      const objectBranch = others.length === 1 ? compileNode(others[0]!, path, rule, records) : null;
      if (!numberBranch && !objectBranch) return null;
      return (value) => {
        if (typeof value === 'number') numberBranch?.(value);
        else if (value !== null && typeof value === 'object') objectBranch?.(value);
      };
    }
    case 'array': {
      const item = compileNode(node.items, `${path}[]`, rule, records);
      if (!item) return null;
      return (value) => {
        for (const v of value as unknown[]) item(v);
      };
    }
    case 'map': {
      const entry = compileNode(node.values, `${path}{}`, rule, records);
      if (!entry) return null;
      return (value) => {
        const map = value as Record<string, unknown>;
        for (const key in map) entry(map[key]);
      };
    }
    case 'record': {
      const pending = records.get(node);
      if (pending) return (value) => pending.check?.(value); // recursion: the record being compiled
      const slot: { check?: Check | null } = {};
      records.set(node, slot);
      const checks: Array<[string, Check]> = [];
      for (const field of node.fields) {
        const fieldRule = rangeRuleOf(field, node.name) ?? {};
        const check = compileNode(field.type, path ? `${path}.${field.name}` : field.name, fieldRule, records);
        if (check) checks.push([field.name, check]);
      }
      records.delete(node);
      slot.check =
        checks.length === 0
          ? null
          : (value) => {
              const record = value as Record<string, unknown>;
              for (let i = 0; i < checks.length; i += 1) checks[i]![1](record[checks[i]![0]]);
            };
      return slot.check;
    }
    default:
      return null;
  }
}

/** A compiled range check of decoded values: throws RangeViolation for the first number outside its field's range. */
export type RangeCheck = (value: unknown) => void;

/** Compiles the range checks of a schema (its JSON, or a parsed graph); null when the schema holds no checked number. */
export function compileRangeCheck(schema: unknown): RangeCheck | null {
  const graph =
    typeof schema === 'object' && schema !== null && 'kind' in schema && !('type' in schema)
      ? (schema as SchemaNode)
      : parseSchemaGraph(schema);
  return compileNode(graph, '', {}, new Map());
}
