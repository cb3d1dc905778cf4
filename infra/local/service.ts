/** What the local stack needs to know about each server it runs. */
import type { Config } from '../../runtime/config/index.ts';
import type { HostTool } from './tools.ts';

export const serviceNames = ['kafka', 'registry', 'redis', 'clickhouse'] as const;
export type ServiceName = (typeof serviceNames)[number];

export interface StackContext {
  readonly config: Config;
  /** Absolute project root (where infra/ lives). */
  readonly root: string;
  /** Absolute folder for data, logs and pid files. */
  readonly stackDir: string;
  /** Absolute, git-ignored folder for downloaded artefacts. */
  readonly cacheDir: string;
  serviceDir(name: ServiceName): string;
  log(line: string): void;
}

export interface LaunchSpec {
  command: string;
  args: string[];
  cwd: string;
  env?: Record<string, string>;
}

export interface LocalService {
  readonly name: ServiceName;
  readonly tools: readonly HostTool[];
  /** Ports it binds on 127.0.0.1, each with the setting that moves it. */
  ports(ctx: StackContext): Array<{ port: number; env: string }>;
  /** Fetch artefacts (cached), write config files, format storage. Idempotent. */
  prepare(ctx: StackContext): Promise<void>;
  launch(ctx: StackContext): LaunchSpec;
  ready(ctx: StackContext): Promise<boolean>;
  version(ctx: StackContext): Promise<string>;
  endpoint(ctx: StackContext): string;
}
