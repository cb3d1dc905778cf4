import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
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

// `schemas` of the working directory: this repository's from `cli/agent-streams` (which starts in its root), a user's
// project's from `npx agent-streams` in that project.
const options = {
  dir: { type: 'string', default: 'schemas' },
  compatibility: { type: 'string', default: 'BACKWARD' },
  format: formatOption,
} as const;

export const schemasCommand: Command = {
  summary:
    'Register the Avro schemas with the registry (refusing incompatible changes), or generate their TypeScript types',
  usage:
    'schemas register [--dir schemas] [--compatibility BACKWARD] [--format table|json] | schemas generate [--dir schemas]',
  options,
  actions: ['register', 'generate'],
  async run(args) {
    const { positionals, values } = parseArgs({ args, allowPositionals: true, options });
    const [action] = expectPositionals('schemas', positionals, ['register|generate']);
    const format = checkFormat(values.format, dataFormats);
    const dir = resolve(values.dir);
    if (!existsSync(dir) || !statSync(dir).isDirectory())
      throw usageError(
        `schemas folder ${values.dir} does not exist (looked for ${dir}); run in your project's folder or pass --dir DIR`,
      );
    const schemas = loadSchemas(dir);
    if (schemas.length === 0)
      throw usageError(`no *.avsc files in ${values.dir}; pass --dir DIR with your Avro schemas`);
    if (action === 'generate') {
      const out = join(dir, 'generated', 'types.ts');
      mkdirSync(dirname(out), { recursive: true });
      writeFileSync(out, generateTypes(schemas, typesHeader));
      console.log(`wrote ${relative(process.cwd(), out)} from ${schemas.length} schemas`);
      return 0;
    }
    if (action !== 'register') throw usageError('schemas needs register or generate');
    const compatibility = values.compatibility as Compatibility;
    if (!compatibilityLevels.includes(compatibility))
      throw usageError(`--compatibility must be one of ${compatibilityLevels.join(', ')}`);
    const config = loadConfig();
    const registered = await registerSchemas(config, registryClient(config), schemas, compatibility);
    console.log(
      formatRows(
        registered.map((r) => ({ subject: r.subject, id: r.id, file: r.file })),
        format,
      ),
    );
    return 0;
  },
};
