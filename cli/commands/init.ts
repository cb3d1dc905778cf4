/**
 * `agent-streams init DIR`: a new project that uses Agent Streams as a library — Avro schemas, a topology, a
 * processor, a driver test, a README that opens with its two commands, and a `.ci/run`. The files are
 * `cli/templates/project/` with the application's name filled in; a path segment `_x` becomes `.x` (npm leaves
 * dot-files such as `.gitignore` out of a package).
 */
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadSchemas } from '../../runtime/serde/schemas.ts';
import { generateTypes } from '../../runtime/serde/typegen.ts';
import { expectPositionals, usageError } from '../args.ts';
import type { Command } from '../main.ts';
import { projectRoot } from '../paths.ts';
import { typesHeader } from './schemas.ts';

export const templateDir = join(projectRoot, 'cli/templates/project');

/** What defineTopology accepts as an application name. */
const applicationPattern = /^[a-z][a-z0-9-]*$/;

/** The application name a folder suggests: `My App` → `my-app`. */
export function applicationFromFolder(dir: string): string {
  return basename(resolve(dir))
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-+/g, '-')
    .replace(/^[-0-9]+|-$/g, '');
}

function templateFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? templateFiles(path) : [path];
  });
}

/** The values put in place of `{{name}}` in the templates. */
function templateValues(application: string): Record<string, string> {
  const own = JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as {
    version: string;
    devDependencies?: Record<string, string>;
  };
  const dev = own.devDependencies ?? {};
  return {
    application,
    // An Avro namespace is dotted identifiers: no dashes.
    namespace: application.replaceAll('-', '_'),
    version: own.version,
    // The same tools this package is built and tested with.
    typescript: dev.typescript ?? '^5.8.0',
    vitest: dev.vitest ?? '^4.0.0',
    '@types/node': dev['@types/node'] ?? '^20.0.0',
  };
}

const options = { application: { type: 'string', short: 'a' } } as const;

export const initCommand: Command = {
  summary:
    'Create a new Agent Streams project in DIR (empty or new): schemas, a topology, a processor, a driver test, a README and .ci/run',
  usage: 'init <dir> [--application NAME]',
  options,
  files: true,
  async run(args) {
    const { positionals, values } = parseArgs({ args, allowPositionals: true, options });
    const [dir] = expectPositionals('init', positionals, ['dir']) as [string];
    const target = resolve(dir);
    if (existsSync(target)) {
      if (!statSync(target).isDirectory()) throw usageError(`${dir} is a file; init needs a new or empty folder`);
      const present = readdirSync(target);
      if (present.length > 0) {
        const shown = present.slice(0, 3).join(', ') + (present.length > 3 ? ', …' : '');
        throw usageError(
          `${dir} is not empty (it has ${shown}); init writes only into a new or empty folder, so pick another one`,
        );
      }
    }
    const application = values.application ?? applicationFromFolder(dir);
    if (!applicationPattern.test(application)) {
      throw usageError(
        values.application === undefined
          ? `cannot make an application name from the folder name "${basename(target)}"; pass --application NAME (lower case letters, digits and dashes, starting with a letter)`
          : `--application must be lower case letters, digits and dashes, starting with a letter (it prefixes topics and consumer groups), got "${application}"`,
      );
    }
    const vars = templateValues(application);
    const written: string[] = [];
    for (const source of templateFiles(templateDir)) {
      const path = relative(templateDir, source)
        .split(/[\\/]/)
        .map((segment) => segment.replace(/^_/, '.'))
        .join('/');
      const text = readFileSync(source, 'utf8').replace(/\{\{([@a-z/_-]+)\}\}/g, (_whole, name: string) => {
        const value = vars[name];
        if (value === undefined) throw new Error(`template ${source} names {{${name}}}, which init does not fill`);
        return value;
      });
      const out = join(target, path);
      mkdirSync(join(out, '..'), { recursive: true });
      writeFileSync(out, text);
      if (path === '.ci/run') chmodSync(out, 0o755);
      written.push(path);
    }
    // The schemas' TypeScript types, so that the project type-checks before anyone runs `schemas generate`.
    const types = join(target, 'schemas/generated/types.ts');
    mkdirSync(join(types, '..'), { recursive: true });
    writeFileSync(types, generateTypes(loadSchemas(join(target, 'schemas')), typesHeader));
    written.push('schemas/generated/types.ts');

    const shown = relative(process.cwd(), target) || '.';
    console.log(`created ${shown}/ for application ${application}:`);
    for (const path of written.sort()) console.log(`  ${path}`);
    console.log(
      `\nnext:\n  cd ${shown}\n  npm install\n  npm test                               # the driver test, no broker\n  npm start -- --processor count-views   # a member on the stack (AS_KAFKA_BROKERS, AS_REGISTRY_URL, AS_REDIS_URL)`,
    );
    return 0;
  },
};
