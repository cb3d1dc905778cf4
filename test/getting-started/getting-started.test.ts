/**
 * The getting-started path as a new user walks it, on the local stack: pack this repository, install the tarball,
 * `agent-streams init` a project, add the processor docs/getting-started.md shows (its code blocks are written into
 * the project as they are, so the page cannot rot), run the project's `.ci/run` (install, type-check, driver tests),
 * then run it as members — two of count-views, one of popular-pages — feed it, and check its output topics. The
 * README's and the guide's `ts` blocks are type-checked inside the project, against the packed package.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { stripVTControlCharacters } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { uniqueName } from '../support/stack.ts';

const root = join(import.meta.dirname, '../..');

/** The ```ts blocks of a Markdown file, in order. */
export function tsBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

/** A block that starts with `// path/to/file.ts` is that file of the project. */
function fileOf(block: string): { path: string; text: string } | undefined {
  const match = /^\/\/ ([\w./-]+\.ts)\n/.exec(block);
  return match ? { path: match[1]!, text: block.slice(match[0].length) } : undefined;
}

/** The environment of a user's shell: none of this test runner's own variables (a nested vitest would read them). */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^(VITEST|TINYPOOL|NODE_OPTIONS$|NODE_ENV$)/.test(k)),
  );
  return { ...env, ...extra };
}

const transcript: string[] = [];

/** Runs a command as a user would type it, records it in the transcript, and fails with its output if it fails. */
function sh(
  cwd: string,
  command: string,
  args: string[],
  options: { input?: string; env?: Record<string, string>; quiet?: boolean } = {},
): SpawnSyncReturns<string> {
  const started = Date.now();
  const raw = spawnSync(command, args, {
    cwd,
    env: userEnv(options.env),
    encoding: 'utf8',
    input: options.input ?? '',
    timeout: 240_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  const result = {
    ...raw,
    stdout: stripVTControlCharacters(raw.stdout ?? ''),
    stderr: stripVTControlCharacters(raw.stderr ?? ''),
  };
  const shown = [...Object.entries(options.env ?? {}).map(([k, v]) => `${k}=${v}`), command, ...args].join(' ');
  transcript.push(`$ ${shown}   # ${((Date.now() - started) / 1000).toFixed(1)} s, exit ${result.status}`);
  if (!options.quiet) transcript.push((result.stdout + result.stderr).trimEnd());
  if (result.status !== 0)
    throw new Error(
      `${shown} (in ${cwd}) exited ${result.status ?? result.signal}:\n${result.stdout}\n${result.stderr}`,
    );
  return result;
}

interface Member {
  processor: string;
  child: ChildProcess;
  events: Array<Record<string, unknown>>;
  exited: Promise<number | null>;
}

function startMember(project: string, processor: string): Member {
  const child = spawn(
    join(project, 'node_modules/.bin/agent-streams'),
    ['run', 'topology.ts', '--processor', processor],
    { cwd: project, env: userEnv({ AS_METRICS_PORT: '0' }), stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const member: Member = {
    processor,
    child,
    events: [],
    exited: new Promise((resolve) => child.once('exit', (code) => resolve(code))),
  };
  createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      member.events.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // not a log line
    }
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
  child.once('exit', (code) => {
    if (code !== 0) console.error(`member ${processor} (pid ${child.pid}) exited ${code}: ${stderr}`);
  });
  return member;
}

/** The partitions a member holds now: those of its last group.join. */
function held(member: Member): number[] {
  const joins = member.events.filter((e) => e.event === 'group.join');
  return (joins.at(-1)?.partitions as number[] | undefined) ?? [];
}

async function until(what: string, done: () => boolean, members: Member[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    const gone = members.find((m) => m.child.exitCode !== null);
    if (gone) throw new Error(`member ${gone.processor} exited ${gone.child.exitCode} while waiting until ${what}`);
    if (Date.now() > deadline) throw new Error(`not ${what} within ${timeoutMs / 1000} s`);
    await sleep(250);
  }
}

const work = mkdtempSync(join(tmpdir(), 'as-getting-started-'));
const members: Member[] = [];

afterAll(() => {
  for (const m of members) if (m.child.exitCode === null && m.child.signalCode === null) m.child.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
});

describe('getting started (docs/getting-started.md)', () => {
  it(
    'packs, installs, scaffolds, tests and runs a new project as members on the stack',
    { timeout: 600_000 },
    async () => {
      const t0 = Date.now();
      const application = uniqueName('gs').replaceAll('_', '-');
      const namespace = application.replaceAll('-', '_');

      // 1. The tarball (npm pack builds dist/ first).
      const packed = JSON.parse(
        sh(root, 'npm', ['pack', '--json', '--loglevel=error', '--pack-destination', work], {
          quiet: true,
        }).stdout.replace(/^[^[]*/, ''),
      ) as Array<{ filename: string; size: number; entryCount: number }>;
      const tarball = join(work, packed[0]!.filename);

      // 2. The CLI from the tarball (what `npx --package ./agent-streams-….tgz` does, without leaving a copy in npm's npx
      //    cache on every run), and `init`.
      const tool = join(work, 'tool');
      mkdirSync(tool);
      writeFileSync(join(tool, 'package.json'), '{ "private": true }\n');
      let t = Date.now();
      sh(tool, 'npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', tarball]);
      const toolInstallMs = Date.now() - t;
      const project = join(work, 'page-views');
      sh(work, join(tool, 'node_modules/.bin/agent-streams'), ['init', project, '--application', application]);
      const refused = spawnSync(join(tool, 'node_modules/.bin/agent-streams'), ['init', project], {
        env: userEnv(),
        encoding: 'utf8',
      });
      expect(refused.status).toBe(2);
      expect(refused.stderr).toMatch(
        /^agent-streams init: .*page-views is not empty \(it has .*\); init writes only into a new or empty folder/,
      );
      const readme = readFileSync(join(project, 'README.md'), 'utf8');
      expect(readme.split('\n').slice(2, 6).join('\n')).toMatch(
        /^```sh\nnpm start -- --processor count-views .*\nnpm test .*\n```$/,
      );

      // 3. The project's dependencies, with the tarball as agent-streams.
      t = Date.now();
      sh(project, 'npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', tarball]);
      const projectInstallMs = Date.now() - t;

      // 4. The guide's files, from its code blocks; the README's and the guide's other ts blocks, to type-check.
      const guide = tsBlocks(readFileSync(join(root, 'docs/getting-started.md'), 'utf8'));
      const files = guide.map(fileOf).filter((f) => f !== undefined);
      expect(files.map((f) => f.path)).toEqual([
        'processors/popular-pages.ts',
        'topology.ts',
        'test/popular-pages.test.ts',
      ]);
      for (const f of files) writeFileSync(join(project, f.path), f.text);
      const loose = [...guide.filter((b) => !fileOf(b)), ...tsBlocks(readFileSync(join(root, 'README.md'), 'utf8'))];
      expect(loose.length).toBeGreaterThan(0);
      loose.forEach((block, i) => writeFileSync(join(project, `doc-example-${i + 1}.ts`), block));

      // 5. The project's CI: install, type-check (the doc blocks included), both driver tests.
      chmodSync(join(project, '.ci/run'), 0o755);
      const ci = sh(project, '.ci/run', []);
      expect(ci.stdout).toMatch(/Test Files\s+\S*2 passed/);
      expect(ci.stdout).toMatch(/Tests\s+\S*2 passed/);

      // 6. On the stack: the schemas, then two members of count-views and one of popular-pages.
      const bin = join(project, 'node_modules/.bin/agent-streams');
      sh(project, bin, ['schemas', 'register', '--dir', 'schemas']);
      t = Date.now();
      members.push(
        startMember(project, 'count-views'),
        startMember(project, 'count-views'),
        startMember(project, 'popular-pages'),
      );
      transcript.push(
        `$ AS_METRICS_PORT=0 ${bin} run topology.ts --processor count-views   # twice`,
        `$ AS_METRICS_PORT=0 ${bin} run topology.ts --processor popular-pages`,
      );
      const [first, second, popular] = members as [Member, Member, Member];
      // Both count-views members hold partitions of its three: the group shares them.
      await until(
        'both count-views members hold partitions',
        () =>
          held(first).length > 0 && held(second).length > 0 && new Set([...held(first), ...held(second)]).size === 3,
        members,
        120_000,
      );
      await until('popular-pages holds its partitions', () => held(popular).length === 3, members, 120_000);
      const membersUpMs = Date.now() - t;
      transcript.push(
        `# count-views members hold partitions ${JSON.stringify(held(first))} and ${JSON.stringify(held(second))}`,
      );

      // Page /pN is visited N times: 15 visits, 15 counts, and /p3, /p4, /p5 become popular once each.
      const visits = [1, 2, 3, 4, 5].flatMap((n) =>
        Array.from({ length: n }, (_, i) => ({
          page: `/p${n}`,
          user: `u${i}`,
          eventTime: Date.UTC(2026, 0, 1, 12, 0, i),
        })),
      );
      sh(project, bin, ['produce', `${application}.page-views`, '--type', `${namespace}.PageView`, '--key', 'page'], {
        input: visits.map((v) => JSON.stringify(v)).join('\n') + '\n',
      });

      // Done when popular-pages has published three pages: read them back with the project's own CLI.
      const tail = (topic: string): Array<{ key: string; value: { page: string; count: number } }> =>
        sh(project, bin, ['tail', topic, '--from-beginning', '--max', '1000', '--format', 'json'])
          .stdout.split('\n')
          .filter((l) => l.trim() !== '')
          .map((l) => JSON.parse(l) as { key: string; value: { page: string; count: number } });
      const deadline = Date.now() + 120_000;
      let popularPages = tail(`${application}.popular-pages`);
      while (popularPages.length < 3 && Date.now() < deadline) {
        await sleep(1000);
        popularPages = tail(`${application}.popular-pages`);
      }

      // 7. SIGTERM by pid: each member finishes, commits, leaves its group and exits 0.
      for (const m of members) m.child.kill('SIGTERM');
      const codes = await Promise.all(members.map((m) => m.exited));
      transcript.push(`$ kill -TERM ${members.map((m) => m.child.pid).join(' ')}   # exit ${codes.join(', ')}`);
      expect(codes).toEqual([0, 0, 0]);

      // Exactly once, read after the members stopped: each page's counts are 1…N, and each popular page appears once.
      const counts = tail(`${application}.page-counts`);
      const byPage = new Map<string, number[]>();
      for (const r of counts) byPage.set(r.key, [...(byPage.get(r.key) ?? []), r.value.count]);
      expect(Object.fromEntries([...byPage].map(([page, c]) => [page, c.sort((a, b) => a - b)]))).toEqual({
        '/p1': [1],
        '/p2': [1, 2],
        '/p3': [1, 2, 3],
        '/p4': [1, 2, 3, 4],
        '/p5': [1, 2, 3, 4, 5],
      });
      popularPages = tail(`${application}.popular-pages`);
      expect(popularPages.map((r) => r.value).sort((a, b) => a.page.localeCompare(b.page))).toEqual([
        { page: '/p3', count: 3 },
        { page: '/p4', count: 3 },
        { page: '/p5', count: 3 },
      ]);
      // What the members say they did: count-views' two members processed the 15 visits between them, popular-pages the 15 counts.
      const records = (m: Member): number => Number(m.events.find((e) => e.event === 'stopped')?.records ?? Number.NaN);
      expect(records(first) + records(second)).toBe(15);
      expect(records(popular)).toBe(15);

      const figures = {
        tarball: `${packed[0]!.filename}, ${(packed[0]!.size / 1024).toFixed(0)} KiB, ${packed[0]!.entryCount} files`,
        installCliS: (toolInstallMs / 1000).toFixed(1),
        installProjectS: (projectInstallMs / 1000).toFixed(1),
        membersUpS: (membersUpMs / 1000).toFixed(1),
        totalS: ((Date.now() - t0) / 1000).toFixed(1),
      };
      console.log(`getting-started figures: ${JSON.stringify(figures)}\n--- transcript ---\n${transcript.join('\n')}`);
    },
  );
});
