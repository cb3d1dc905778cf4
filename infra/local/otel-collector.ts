/**
 * A real OpenTelemetry Collector for tests: the OTLP receiver (HTTP, on 127.0.0.1) and the file exporter, built
 * from the Go module proxy (infra/otel-collector, see docs/tracing.md) into .cache/go on first use.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentStreamsError, ErrorCode } from '../../runtime/errors.ts';
import { ensureGoModuleBuild, type GoModuleBuild } from './go-tools.ts';

export const OTEL_COLLECTOR: GoModuleBuild = {
  name: 'otelcol-agent-streams',
  dir: 'infra/otel-collector',
  why: 'the tracing test exports spans through a real OpenTelemetry Collector',
};

/** The collector's binary, built first if this clone has not built it yet (minutes, once). */
export function ensureOtelCollector(log: (line: string) => void = () => {}): string {
  return ensureGoModuleBuild(OTEL_COLLECTOR, log);
}

export interface RunningCollector {
  /** OTLP/HTTP base URL, for OTEL_EXPORTER_OTLP_ENDPOINT. */
  endpoint: string;
  pid: number;
  /** SIGTERM (the file exporter flushes), SIGKILL after `graceMs`. Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Starts a collector that writes every span it receives to `file` (OTLP JSON, one export request per line). */
export async function startOtelCollector(options: {
  dir: string;
  file: string;
  log?: (line: string) => void;
}): Promise<RunningCollector> {
  const binary = ensureOtelCollector(options.log);
  const port = await freePort();
  const config = join(options.dir, 'otelcol.yaml');
  writeFileSync(
    config,
    [
      'receivers:',
      '  otlp:',
      '    protocols:',
      '      http:',
      `        endpoint: 127.0.0.1:${port}`,
      'exporters:',
      '  file:',
      `    path: ${JSON.stringify(options.file)}`,
      '    flush_interval: 100ms',
      'service:',
      '  telemetry:',
      '    metrics:',
      '      level: none',
      '  pipelines:',
      '    traces:',
      '      receivers: [otlp]',
      '      exporters: [file]',
      '',
    ].join('\n'),
  );
  const child = spawn(binary, ['--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let output = '';
  child.stderr!.on('data', (chunk: Buffer) => void (output = (output + chunk.toString()).slice(-20_000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 30_000;
  while (!output.includes('Everything is ready')) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new AgentStreamsError(
        ErrorCode.STACK_TOOL_MISSING,
        `The OpenTelemetry Collector did not start: ${output.trim().split('\n').slice(-3).join(' | ')}`,
      );
    }
    await sleep(100);
  }
  let stopping: Promise<void> | undefined;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    pid: child.pid!,
    stop(graceMs = 10_000) {
      stopping ??= (async () => {
        if (child.exitCode !== null) return;
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      })();
      return stopping;
    },
  };
}
