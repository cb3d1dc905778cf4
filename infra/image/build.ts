/**
 * Building the project's image (the Containerfile at the root) with podman. By default on the local base image
 * (base.ts), since no registry is reachable here; `baseImage` names any other Node 20 image (e.g. the official
 * `docker.io/library/node:20-bookworm-slim`, the Containerfile's own default, where Docker Hub is reachable).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BASE_IMAGE, buildBaseImage } from './base.ts';
import { ensurePodman, imageSize, podmanError, podmanStreaming } from './podman.ts';

const projectRoot = resolve(import.meta.dirname, '..', '..');

/** The image the CLI, the podman overlay and the tests use. */
export const APP_IMAGE = 'localhost/agent-streams:local';

export interface ImageBuildOptions {
  tag?: string;
  /** Any Node 20 image; the local base (built first when missing) by default. */
  baseImage?: string;
  /** `--no-cache`: every step runs again (a cold build of the app layers). */
  noCache?: boolean;
  /** The image's version label; package.json's version by default. */
  version?: string;
  log?: (line: string) => void;
}

export interface ImageBuildResult {
  image: string;
  baseImage: string;
  /** Seconds spent on the base (0 when it was there) and on the app image. */
  baseSeconds: number;
  appSeconds: number;
  sizeBytes: number;
}

function git(args: string[]): string | undefined {
  try {
    return execFileSync('git', args, {
      cwd: projectRoot,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    return undefined;
  }
}

/**
 * The CA bundle this machine trusts, handed to the `npm ci` step as a build secret: behind a TLS-inspecting proxy
 * the registry's certificate is signed by a local CA the base image does not know. Not copied into the image.
 */
export function hostCaBundle(): string | undefined {
  const candidates = [process.env.NODE_EXTRA_CA_CERTS, process.env.SSL_CERT_FILE, '/etc/ssl/certs/ca-certificates.crt'];
  return candidates.find((path): path is string => path !== undefined && path !== '' && existsSync(path));
}

export async function buildImage(options: ImageBuildOptions = {}): Promise<ImageBuildResult> {
  const log = options.log ?? (() => {});
  const tag = options.tag ?? APP_IMAGE;
  ensurePodman(log);
  let baseImage = options.baseImage ?? BASE_IMAGE;
  let baseSeconds = 0;
  if (options.baseImage === undefined) {
    const base = buildBaseImage({ log });
    baseImage = base.image;
    baseSeconds = base.seconds;
    log(
      base.built
        ? `base image ${base.image} built in ${base.seconds.toFixed(1)} s`
        : `base image ${base.image} is up to date (inputs ${base.key})`,
    );
  }
  const version =
    options.version ??
    (JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { version: string }).version;
  const labels = {
    VERSION: version,
    REVISION: git(['rev-parse', 'HEAD']) ?? 'unknown',
    // The commit's time, not the build's: the same commit gives the same labels.
    CREATED: git(['log', '-1', '--format=%cI']) ?? 'unknown',
  };
  const ca = hostCaBundle();
  const args = [
    'build',
    // Host networking for the build's downloads (npm, and Debian for tini on a base without it).
    '--network=host',
    '--layers',
    ...(options.noCache ? ['--no-cache'] : []),
    '--build-arg',
    `BASE_IMAGE=${baseImage}`,
    // The Containerfile's labels come from build args, but podman 4.3 (buildah 1.28) reuses a cached LABEL step
    // whatever the args' values: the labels that vary are given again with --label, which is always applied.
    ...Object.entries(labels).flatMap(([name, value]) => [
      '--build-arg',
      `${name}=${value}`,
      '--label',
      `org.opencontainers.image.${name.toLowerCase()}=${value}`,
    ]),
    '--label',
    `org.opencontainers.image.base.name=${baseImage}`,
    ...(ca ? ['--secret', `id=ca-certificates,src=${ca}`] : []),
    '--file',
    join(projectRoot, 'Containerfile'),
    '--tag',
    tag,
    projectRoot,
  ];
  const started = Date.now();
  const output: string[] = [];
  log(`podman build ${tag} from ${baseImage}`);
  const code = await podmanStreaming(args, (line) => {
    output.push(line);
    if (/^\[\d\/\d\] STEP|^STEP|Successfully tagged/.test(line))
      log(line.length > 160 ? `${line.slice(0, 157)}...` : line);
  });
  if (code !== 0) throw podmanError(args, output.join('\n'));
  const appSeconds = (Date.now() - started) / 1000;
  return { image: tag, baseImage, baseSeconds, appSeconds, sizeBytes: imageSize(tag) };
}
