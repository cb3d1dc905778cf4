import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../../runtime/config/index.ts';
import { registryClient } from '../../runtime/serde/avro.ts';
import { compatibilityLevels, loadSchemas, registerSchemas, type Compatibility } from '../../runtime/serde/schemas.ts';
import { generateTypes } from '../../runtime/serde/typegen.ts';
import { projectRoot } from '../paths.ts';
import { expectPositionals, usageError } from '../args.ts';
import { checkFormat, dataFormats, formatOption, formatRows } from '../format.ts';
import type { Command } from '../main.ts';

export const typesHeader = '// Generated from schemas/**/*.avsc by `agent-streams schemas generate`. Do not edit.';
export const generatedTypesPath = join(projectRoot, 'schemas/generated/types.ts');

const options = { dir: { type: 'string', default: join(projectRoot, 'schemas') }, compatibility: { type: 'string', default: 'BACKWARD' }, format: formatOption } as const;

export const schemasCommand: Command = {
  summary: 'Register the Avro schemas with the registry (refusing incompatible changes), or generate their TypeScript types',
  usage: 'schemas register [--dir schemas] [--compatibility BACKWARD] [--format table|json] | schemas generate [--dir schemas]',
  options,
  actions: ['register', 'generate'],
  async run(args) {
    const { positionals, values } = parseArgs({ args, allowPositionals: true, options });
    const [action] = expectPositionals('schemas', positionals, ['register|generate']);
    const format = checkFormat(values.format, dataFormats);
    const schemas = loadSchemas(values.dir);
    if (action === 'generate') {
      writeFileSync(generatedTypesPath, generateTypes(schemas, typesHeader));
      console.log(`wrote ${generatedTypesPath} from ${schemas.length} schemas`);
      return 0;
    }
    if (action !== 'register') throw usageError('schemas needs register or generate');
    const compatibility = values.compatibility as Compatibility;
    if (!compatibilityLevels.includes(compatibility)) throw usageError(`--compatibility must be one of ${compatibilityLevels.join(', ')}`);
    const config = loadConfig();
    const registered = await registerSchemas(config, registryClient(config), schemas, compatibility);
    console.log(formatRows(registered.map((r) => ({ subject: r.subject, id: r.id, file: r.file })), format));
    return 0;
  },
};
