/**
 * A peer (Kafka Streams, Quix Streams) run by bench/runtime.ts as a child process: started with its arguments,
 * watched through the lines it prints (`FIRST <epoch ms>` when its first input record is processed, `STATE <name>`
 * from Kafka Streams), stopped by its pid with SIGTERM and, past a deadline, SIGKILL.
 */
import { spawn, type ChildProcess } from 'node:child_process';

export interface PeerProcess {
  readonly pid: number;
  /** performance.now() of the peer's first processed input record (from the epoch ms it printed), once seen. */
  firstRecordAt(): number | undefined;
  /** Resolves when the peer printed `STATE <state>`; rejects if it exits first. */
  reached(state: string): Promise<void>;
  /** Exit code (or signal name) once the process has ended, else undefined. */
  exited(): number | string | undefined;
  /** The last lines it wrote to stderr, for error messages. */
  stderrTail(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has ended. Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

export function startPeer(
  name: string,
  command: string,
  args: string[],
  options: { cwd: string; env?: NodeJS.ProcessEnv },
): PeerProcess {
  const child: ChildProcess = spawn(command, args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid === undefined) throw new Error(`${name}: could not start ${command}`);
  const pid = child.pid;
  let first: number | undefined;
  let exit: number | string | undefined;
  const states = new Set<string>();
  const waiters: { state: string; resolve: () => void; reject: (e: Error) => void }[] = [];
  const stderr: string[] = [];
  const ended = new Promise<void>((resolve) => {
    child.on('exit', (code, signal) => {
      exit = code ?? signal ?? 'unknown';
      for (const w of waiters.splice(0))
        w.reject(new Error(`${name} exited (${exit}) before reaching ${w.state}: ${tail()}`));
      resolve();
    });
  });
  child.on('error', (error) => stderr.push(`spawn: ${error.message}`));
  const tail = (): string => stderr.slice(-15).join('\n');
  let pending = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    pending += chunk;
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      const [word, rest] = [line.slice(0, line.indexOf(' ')), line.slice(line.indexOf(' ') + 1).trim()];
      if (word === 'FIRST' && first === undefined) first = Number(rest) - performance.timeOrigin;
      else if (word === 'STATE') {
        states.add(rest);
        for (const w of waiters.filter((x) => x.state === rest)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve();
        }
      }
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    for (const line of chunk.split('\n')) if (line.trim() !== '') stderr.push(line);
    if (stderr.length > 200) stderr.splice(0, stderr.length - 200);
  });
  return {
    pid,
    firstRecordAt: () => first,
    reached: (state) =>
      states.has(state)
        ? Promise.resolve()
        : exit !== undefined
          ? Promise.reject(new Error(`${name} has exited (${exit}): ${tail()}`))
          : new Promise<void>((resolve, reject) => waiters.push({ state, resolve, reject })),
    exited: () => exit,
    stderrTail: tail,
    stop: async (graceMs = 30_000) => {
      if (exit === undefined) {
        process.kill(pid, 'SIGTERM');
        const timer = setTimeout(() => {
          if (exit === undefined) process.kill(pid, 'SIGKILL');
        }, graceMs);
        await ended;
        clearTimeout(timer);
      }
    },
  };
}
