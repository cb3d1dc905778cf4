/**
 * Starting a topology's processors as separate member processes (`agent-streams run … --processor NAME`), the
 * way a deployment runs them, and stopping exactly those processes again by pid.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { projectRoot } from './paths.ts';

export interface Member {
  processor: string;
  child: ChildProcess;
  /** JSON log lines the member printed. */
  events: Array<Record<string, unknown>>;
}

export interface StartMemberOptions {
  /** Called with each JSON log line the member prints. */
  onEvent?: (member: Member, event: Record<string, unknown>) => void;
  /** The CLI arguments, when the member is not `run <topology> --processor NAME` (e.g. `sink <topology>`). */
  command?: string[];
}

export function startMember(
  topologyFile: string,
  processor: string,
  env: Record<string, string> = {},
  options: StartMemberOptions = {},
): Member {
  const { onEvent, command = ['run', topologyFile, '--processor', processor] } = options;
  const child = spawn(process.execPath, [join(projectRoot, 'cli/bin.mjs'), ...command], {
    cwd: projectRoot,
    // Many members share this machine: each picks a free metrics port (it logs it as `metricsPort`) unless told one.
    env: { ...process.env, ...env, AS_METRICS_PORT: env.AS_METRICS_PORT ?? '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const member: Member = { processor, child, events: [] };
  createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      const event = JSON.parse(line) as Record<string, unknown>;
      member.events.push(event);
      onEvent?.(member, event);
    } catch {
      // not a log line of ours
    }
  });
  return member;
}

export async function waitUntilStarted(members: Member[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const member of members) {
    while (!member.events.some((e) => e.event === 'started')) {
      if (member.child.exitCode !== null)
        throw new Error(`processor ${member.processor} exited with ${member.child.exitCode} before it started`);
      if (Date.now() > deadline) throw new Error(`processor ${member.processor} did not start within ${timeoutMs} ms`);
      await sleep(100);
    }
  }
}

/** SIGTERM to each member (they finish, commit and leave), SIGKILL to any still there after `graceMs`. */
export async function stopMembers(members: Member[], graceMs = 30_000): Promise<Array<number | null>> {
  return Promise.all(
    members.map(async ({ child }) => {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    }),
  );
}
