/**
 * `agent-streams init DIR` (no service needed): the project it writes, and the folders it refuses. That the project
 * installs, type-checks, tests and runs is test/getting-started/getting-started.test.ts's job.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { applicationFromFolder } from '../../cli/commands/init.ts';
import { lines, root, runCli } from '../support/cli.ts';

const work = mkdtempSync(join(tmpdir(), 'as-init-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? files(join(dir, d.name)) : [join(dir, d.name)],
  );
}

describe('agent-streams init', () => {
  it('writes a project named after its folder, with every placeholder filled and the schemas’ types generated', async () => {
    const project = join(work, 'My Shop');
    const result = await runCli(['init', project]);
    expect(result.code, result.stderr).toBe(0);
    const written = files(project)
      .map((f) => relative(project, f))
      .sort();
    expect(written).toEqual([
      '.ci/run',
      '.gitignore',
      'README.md',
      'names.ts',
      'package.json',
      'processors/count-views.ts',
      'schemas/PageCount.avsc',
      'schemas/PageView.avsc',
      'schemas/generated/types.ts',
      'test/topology.test.ts',
      'topology.ts',
      'tsconfig.json',
    ]);
    for (const file of written) expect(readFileSync(join(project, file), 'utf8'), file).not.toMatch(/\{\{/);
    expect(statSync(join(project, '.ci/run')).mode & 0o111).toBe(0o111);
    expect(readFileSync(join(project, 'names.ts'), 'utf8')).toContain("export const application = 'my-shop';");
    expect(JSON.parse(readFileSync(join(project, 'schemas/PageView.avsc'), 'utf8'))).toMatchObject({
      name: 'PageView',
      namespace: 'my_shop',
    });
    const own = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
      version: string;
      devDependencies: Record<string, string>;
    };
    const pkg = JSON.parse(readFileSync(join(project, 'package.json'), 'utf8')) as {
      name: string;
      dependencies: Record<string, string>;
      devDependencies: Record<string, string>;
    };
    expect(pkg.name).toBe('my-shop');
    expect(pkg.dependencies).toEqual({ 'agent-streams': `^${own.version}` });
    expect(pkg.devDependencies.vitest).toBe(own.devDependencies.vitest);
    expect(readFileSync(join(project, 'README.md'), 'utf8')).toMatch(
      /^# my-shop\n\n```sh\nnpm start -- --processor count-views .*\nnpm test .*\n```\n/,
    );
    // The types init wrote are what `schemas generate --dir` writes.
    const types = readFileSync(join(project, 'schemas/generated/types.ts'), 'utf8');
    expect(types).toContain("export const PageViewType = 'my_shop.PageView';");
    const generated = await runCli(['schemas', 'generate', '--dir', join(project, 'schemas')]);
    expect(generated.code, generated.stderr).toBe(0);
    expect(readFileSync(join(project, 'schemas/generated/types.ts'), 'utf8')).toBe(types);
  });

  it('takes --application, and writes into an empty folder that exists', async () => {
    const project = join(work, 'empty');
    mkdirSync(project);
    const result = await runCli(['init', project, '--application', 'clicks-2']);
    expect(result.code, result.stderr).toBe(0);
    expect(readFileSync(join(project, 'names.ts'), 'utf8')).toContain("export const application = 'clicks-2';");
  });

  it('refuses a folder that is not empty, a file, an invalid --application and a folder name that makes no name, each in one line with exit 2', async () => {
    const full = join(work, 'full');
    mkdirSync(full);
    writeFileSync(join(full, 'notes.txt'), 'mine\n');
    const cases: Array<[string[], RegExp]> = [
      [
        ['init', full],
        /^agent-streams init: .*full is not empty \(it has notes\.txt\); init writes only into a new or empty folder, so pick another one/,
      ],
      [
        ['init', join(full, 'notes.txt')],
        /^agent-streams init: .*notes\.txt is a file; init needs a new or empty folder/,
      ],
      [
        ['init', join(work, 'x'), '--application', 'Bad_Name'],
        /^agent-streams init: --application must be lower case letters, digits and dashes, starting with a letter .*got "Bad_Name"/,
      ],
      [
        ['init', join(work, '___')],
        /^agent-streams init: cannot make an application name from the folder name "___"; pass --application NAME/,
      ],
      [['init'], /^agent-streams init: init needs <dir>/],
    ];
    for (const [args, message] of cases) {
      const result = await runCli(args);
      expect(result.code, args.join(' ')).toBe(2);
      expect(lines(result.stderr)).toHaveLength(1);
      expect(result.stderr).toMatch(message);
    }
    expect(readdirSync(full)).toEqual(['notes.txt']);
  });

  it('makes an application name from a folder name', () => {
    expect(applicationFromFolder('/tmp/My App')).toBe('my-app');
    expect(applicationFromFolder('page_views')).toBe('page-views');
    expect(applicationFromFolder('2026-report')).toBe('report');
    expect(applicationFromFolder('___')).toBe('');
  });
});

describe('folders given to schemas and migrate', () => {
  it('are usage errors when they do not exist', async () => {
    const missing = join(work, 'nope');
    for (const args of [
      ['schemas', 'register', '--dir', missing],
      ['schemas', 'generate', '--dir', missing],
      ['migrate', '--dir', missing],
    ]) {
      const result = await runCli(args);
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr).toMatch(/folder .*nope does not exist \(looked for .*nope\)/);
    }
  });

  it('migrate: --scope belongs with --dir, and --dir without a package.json name needs --scope', async () => {
    const scopeOnly = await runCli(['migrate', '--scope', 'app']);
    expect(scopeOnly.code).toBe(2);
    expect(scopeOnly.stderr).toMatch(/--scope names the records of a folder of your own: pass --dir DIR with it/);
    const dir = mkdtempSync(join(work, 'migrations-'));
    const noName = await runCli(['migrate', '--dir', dir], { cwd: dir });
    expect(noName.code).toBe(2);
    expect(noName.stderr).toMatch(/migrate --dir needs --scope NAME/);
  });
});
