/**
 * The Quix Streams peer (bench/peers/quix/peer.py): installed on demand from PyPI, at the version pinned in
 * bench/peers/quix/requirements.txt, into a virtual environment in the project's git-ignored .cache/quix/venv.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { startPeer, type PeerProcess } from './process.ts';

const root = resolve(import.meta.dirname, '..', '..');
const requirements = join(root, 'bench', 'peers', 'quix', 'requirements.txt');
const venv = join(root, '.cache', 'quix', 'venv');
const python = join(venv, 'bin', 'python');

export function quixVersion(): string {
  const pin = /^quixstreams==(\S+)$/m.exec(readFileSync(requirements, 'utf8'));
  if (!pin) throw new Error(`${requirements} must pin quixstreams==<version>`);
  return pin[1]!;
}

function run(command: string, args: string[], what: string): string {
  const result = spawnSync(command, args, { cwd: root, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (result.status !== 0) {
    throw new Error(
      `${what} failed (exit ${result.status ?? result.signal}): ${`${result.stdout ?? ''}${result.stderr ?? ''}`.split('\n').slice(-20).join('\n')}`,
    );
  }
  return result.stdout;
}

/** Installs the pinned Quix Streams if the venv lacks it; returns the venv's python. */
export function ensureQuixPeer(log: (line: string) => void): string {
  const version = quixVersion();
  const installed = existsSync(python)
    ? spawnSync(python, ['-c', 'import importlib.metadata as m; print(m.version("quixstreams"))'], {
        encoding: 'utf8',
      }).stdout?.trim()
    : undefined;
  if (installed !== version) {
    log(`installing Quix Streams ${version} from PyPI into ${venv}`);
    if (!existsSync(python)) run('python3', ['-m', 'venv', venv], 'python3 -m venv');
    run(python, ['-m', 'pip', 'install', '-q', '-r', requirements], 'pip install quixstreams');
  }
  return python;
}

export interface QuixOptions {
  mode: 'router' | 'windowed';
  bootstrap: string;
  group: string;
  input: string;
  stateDir: string;
  routes?: Map<number, string>;
  output?: string;
  /** Seconds between checkpoints (Quix's default is 5). */
  commitIntervalS: number;
}

export function startQuixPeer(python: string, o: QuixOptions): PeerProcess {
  const args = [
    join(root, 'bench', 'peers', 'quix', 'peer.py'),
    o.mode,
    '--bootstrap',
    o.bootstrap,
    '--group',
    o.group,
    '--input',
    o.input,
    '--state-dir',
    o.stateDir,
    '--commit-interval',
    String(o.commitIntervalS),
  ];
  if (o.routes) args.push('--routes', [...o.routes].map(([id, topic]) => `${id}:${topic}`).join(','));
  if (o.output) args.push('--output', o.output);
  return startPeer('quix streams peer', python, args, {
    cwd: root,
    env: { ...process.env, PYTHONUNBUFFERED: '1', PYTHONWARNINGS: 'ignore' },
  });
}
