import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { generateTypes } from '../../../runtime/serde/typegen.ts';
import { loadSchemas, parseSchema } from '../../../runtime/serde/schemas.ts';
import { generatedTypesPath, typesHeader } from '../../../cli/commands/schemas.ts';

describe('types generated from the Avro schemas', () => {
  it('are up to date in schemas/generated/types.ts (run `agent-streams schemas generate` after changing a schema)', () => {
    const schemas = loadSchemas(join(import.meta.dirname, '../../../schemas'));
    expect(readFileSync(generatedTypesPath, 'utf8')).toBe(generateTypes(schemas, typesHeader));
  });

  it('map every Avro construct to its TypeScript counterpart', () => {
    const schema = parseSchema(
      JSON.stringify({
        type: 'record',
        name: 'All',
        namespace: 'x.y',
        fields: [
          { name: 'flag', type: 'boolean' },
          { name: 'count', type: 'long' },
          { name: 'blob', type: 'bytes' },
          { name: 'tags', type: { type: 'array', items: 'string' } },
          { name: 'scores', type: { type: 'map', values: 'double' } },
          { name: 'level', type: { type: 'enum', name: 'Level', symbols: ['LOW', 'HIGH'] } },
          { name: 'again', type: ['null', 'Level'], default: null },
          { name: 'inner', type: { type: 'record', name: 'Inner', fields: [{ name: 'n', type: 'int' }] } },
        ],
      }),
      'all.avsc',
    );
    const out = generateTypes([schema], '// h');
    expect(out).toContain("export type Level = 'LOW' | 'HIGH';");
    expect(out).toContain('export interface Inner {\n  n: number;\n}');
    expect(out).toContain(
      'export interface All {\n  flag: boolean;\n  count: number;\n  blob: Buffer;\n  tags: Array<string>;\n  scores: Record<string, number>;\n  level: Level;\n  again: null | Level;\n  inner: Inner;\n}',
    );
    expect(out).toContain("export const AllType = 'x.y.All';");
  });
});
