/**
 * Running podman the one way that works on these machines: through the `infra/image/podman` wrapper (runc,
 * cgroupfs and the containers.conf beside it). The image build, `agent-streams image` and the tests all come here,
 * so a flag changes in one place.
 */
import { execFileSync, spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { AgentStreamsError, ErrorCode } from '../../runtime/errors.ts';
import { ensureTools, hostTools, type HostTool } from '../local/tools.ts';

const projectRoot = resolve(import.meta.dirname, '..', '..');

/** The wrapper script: `infra/image/podman <args>` is what a person types to do by hand what the code does. */
export const podmanWrapper = join(projectRoot, 'infra', 'image', 'podman');

/** Podman plus what it needs here: runc (the wrapper's runtime) and catatonit (every pod's pause image is built from it). */
const podmanTools: HostTool[] = [
  hostTools.podman,
  { command: 'runc', aptPackages: ['runc'], why: 'podman runs containers with runc here' },
  { command: 'catatonit', aptPackages: ['catatonit'], why: "podman builds its pods' pause image from catatonit" },
];

export function ensurePodman(log: (line: string) => void = () => {}): void {
  ensureTools(podmanTools, log);
}

/** Runs podman and returns its stdout; a failure says which command failed and the end of what podman said. */
export function podman(args: string[], options: { input?: string | Buffer; timeoutMs?: number } = {}): string {
  try {
    return execFileSync(podmanWrapper, args, {
      encoding: 'utf8',
      input: options.input,
      maxBuffer: 64 * 1024 * 1024,
      timeout: options.timeoutMs ?? 600_000,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
  } catch (error) {
    throw podmanError(args, String((error as { stderr?: string }).stderr ?? ''), error);
  }
}

/** Like `podman`, but lines go to `onLine` as they come (builds take minutes); resolves with the exit code. */
export function podmanStreaming(args: string[], onLine: (line: string) => void): Promise<number> {
  return new Promise((resolveCode, reject) => {
    const child = spawn(podmanWrapper, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let partial = '';
    const take = (chunk: Buffer): void => {
      const lines = (partial + chunk.toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) onLine(line);
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('error', reject);
    child.on('close', (code) => {
      if (partial !== '') onLine(partial);
      resolveCode(code ?? 1);
    });
  });
}

export function podmanError(args: string[], stderr: string, cause?: unknown): AgentStreamsError {
  const tail = stderr.trim().split('\n').slice(-6).join(' | ');
  return new AgentStreamsError(
    ErrorCode.IMAGE_BUILD_FAILED,
    `podman ${args.slice(0, 3).join(' ')} failed: ${tail || 'no output'}`,
    {
      cause,
      details: { args },
    },
  );
}

/** The value of one label of a local image, or undefined when the image is not there. */
export function imageLabel(image: string, label: string): string | undefined {
  try {
    const out = execFileSync(podmanWrapper, ['image', 'inspect', '--format', `{{index .Labels "${label}"}}`, image], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
    return out === '' || out === '<no value>' ? undefined : out;
  } catch {
    return undefined;
  }
}

/** Whether a local image exists. */
export function imageExists(image: string): boolean {
  try {
    execFileSync(podmanWrapper, ['image', 'exists', image], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Size of a local image in bytes, as podman reports it (uncompressed layers). */
export function imageSize(image: string): number {
  return Number(podman(['image', 'inspect', '--format', '{{.Size}}', image]).trim());
}
