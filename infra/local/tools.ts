/**
 * Host tools the local stack runs on (a JDK, Maven, Debian's redis-server and clickhouse-server). A missing one
 * is installed with apt-get when we are root on Debian; otherwise the error says which package to install.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { AgentStreamsError, ErrorCode } from '../../runtime/errors.ts';

export interface HostTool {
  command: string;
  aptPackages: string[];
  why: string;
}

export const hostTools = {
  java: {
    command: 'java',
    aptPackages: ['openjdk-17-jre-headless'],
    why: 'Kafka and the schema registry run on a JVM',
  },
  mvn: {
    command: 'mvn',
    aptPackages: ['maven'],
    why: 'Kafka and registry jars are fetched from Maven Central with Maven',
  },
  redis: { command: 'redis-server', aptPackages: ['redis-server'], why: 'window and key-value state live in Redis' },
  clickhouse: {
    command: 'clickhouse-server',
    aptPackages: ['clickhouse-server', 'clickhouse-client'],
    why: 'findings, alerts, digests and the LLM audit are stored in ClickHouse',
  },
  // catatonit: podman builds its pods' pause image from it (kube play, pod create); Debian only recommends it.
  podman: {
    command: 'podman',
    aptPackages: ['podman', 'runc', 'catatonit'],
    why: 'the container image is built and the Kubernetes manifests are played with podman',
  },
  debootstrap: {
    command: 'debootstrap',
    aptPackages: ['debootstrap'],
    why: 'the base image is a Debian root filesystem built locally',
  },
  openssl: {
    command: 'openssl',
    aptPackages: ['openssl'],
    why: '`stack up --secure` makes the CA and the Kafka certificates with openssl',
  },
  prometheus: {
    command: 'prometheus',
    aptPackages: ['prometheus'],
    why: 'a real Prometheus scrapes the fleet and evaluates the alert rules (promtool checks them)',
  },
} as const satisfies Record<string, HostTool>;

export function findCommand(command: string): string | undefined {
  const result = spawnSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' });
  const path = result.stdout.trim();
  return result.status === 0 && path !== '' ? path : undefined;
}

let aptUpdated = false;

export function ensureTools(tools: HostTool[], log: (line: string) => void): void {
  const missing = tools.filter((tool) => findCommand(tool.command) === undefined);
  if (missing.length === 0) return;
  const packages = missing.flatMap((tool) => tool.aptPackages);
  const canApt = process.getuid?.() === 0 && existsSync('/usr/bin/apt-get');
  if (!canApt) {
    throw new AgentStreamsError(
      ErrorCode.STACK_TOOL_MISSING,
      `Missing ${missing.map((t) => `${t.command} (${t.why})`).join(', ')}. ` +
        `Install them, e.g. \`sudo apt-get install -y ${packages.join(' ')}\`, then run the command again.`,
      { details: { missing: missing.map((t) => t.command) } },
    );
  }
  log(`installing ${packages.join(' ')} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  try {
    if (!aptUpdated) {
      execFileSync('apt-get', ['update', '-q'], { stdio: 'ignore', env });
      aptUpdated = true;
    }
    execFileSync('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...packages], { stdio: 'ignore', env });
  } catch (error) {
    throw new AgentStreamsError(
      ErrorCode.STACK_TOOL_MISSING,
      `apt-get could not install ${packages.join(' ')}; check that Debian's package mirror is reachable and retry.`,
      { cause: error, retriable: true },
    );
  }
  const still = missing.filter((tool) => findCommand(tool.command) === undefined);
  if (still.length > 0) {
    throw new AgentStreamsError(
      ErrorCode.STACK_TOOL_MISSING,
      `apt-get ran but ${still.map((t) => t.command).join(', ')} is still missing.`,
    );
  }
}
