/**
 * TypeScript types generated from the Avro schemas, so that code and schemas cannot drift: `agent-streams
 * schemas generate` writes them, and a test fails when the committed file differs from what the schemas give.
 */
import type { SchemaFile } from './schemas.ts';
import { AgentStreamsError, ErrorCode } from '../errors.ts';

type AvroNode = string | AvroNode[] | { type: AvroNode; [key: string]: unknown };

interface Named {
  name: string;
  namespace?: string;
  doc?: string;
}

export function generateTypes(schemas: SchemaFile[], header: string): string {
  const declarations = new Map<string, string>();
  const fullNames = new Map<string, string>();

  const shortName = (name: string): string => name.slice(name.lastIndexOf('.') + 1);

  const typeOf = (node: AvroNode, namespace: string | undefined): string => {
    if (typeof node === 'string') {
      switch (node) {
        case 'null':
          return 'null';
        case 'boolean':
          return 'boolean';
        case 'int':
        case 'long':
        case 'float':
        case 'double':
          return 'number';
        case 'bytes':
          return 'Buffer';
        case 'string':
          return 'string';
        default: {
          const full = node.includes('.') ? node : namespace ? `${namespace}.${node}` : node;
          const known = fullNames.get(full) ?? fullNames.get(node);
          if (!known)
            throw new AgentStreamsError(ErrorCode.SCHEMA_INVALID, `Type ${node} is referenced before it is defined.`);
          return known;
        }
      }
    }
    if (Array.isArray(node)) return node.map((branch) => typeOf(branch, namespace)).join(' | ');
    const t = node.type;
    if (t === 'record' || t === 'enum' || t === 'fixed')
      return declare(node as unknown as Named & { type: string }, namespace);
    if (t === 'array') return `Array<${typeOf(node.items as AvroNode, namespace)}>`;
    if (t === 'map') return `Record<string, ${typeOf(node.values as AvroNode, namespace)}>`;
    return typeOf(t, namespace);
  };

  const declare = (
    node: Named & { type: string; symbols?: string[]; fields?: Array<{ name: string; type: AvroNode; doc?: string }> },
    outer: string | undefined,
  ): string => {
    const namespace = node.name.includes('.')
      ? node.name.slice(0, node.name.lastIndexOf('.'))
      : (node.namespace ?? outer);
    const full = namespace ? `${namespace}.${shortName(node.name)}` : node.name;
    const name = shortName(node.name);
    const clash = [...fullNames].find(([f, n]) => n === name && f !== full);
    if (clash)
      throw new AgentStreamsError(
        ErrorCode.SCHEMA_INVALID,
        `Two schema types are both called ${name} (${clash[0]} and ${full}); rename one.`,
      );
    fullNames.set(full, name);
    const doc = node.doc ? `/** ${node.doc} */\n` : '';
    if (node.type === 'enum') {
      declarations.set(full, `${doc}export type ${name} = ${(node.symbols ?? []).map((s) => `'${s}'`).join(' | ')};`);
    } else if (node.type === 'fixed') {
      declarations.set(full, `${doc}export type ${name} = Buffer;`);
    } else {
      const fields = (node.fields ?? []).map(
        (f) => `${f.doc ? `  /** ${f.doc} */\n` : ''}  ${f.name}: ${typeOf(f.type, namespace)};`,
      );
      declarations.set(
        full,
        `${doc}export interface ${name} {\n${fields.join('\n')}\n}\n\n/** Subject and record type name of ${name}. */\nexport const ${name}Type = '${full}';`,
      );
    }
    return name;
  };

  for (const s of schemas) typeOf(s.schema as AvroNode, undefined);
  return `${header}\n\n${[...declarations.values()].join('\n\n')}\n`;
}
