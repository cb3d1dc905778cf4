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
  /** Kafka brokers the stack runs: 1 (the default), or a cluster of combined broker+controller nodes. */
  readonly kafkaBrokers: number;
  /** Kafka also listens with SASL_SSL on its secure port (`stack up --secure`; kept once the folder has it). */
  readonly kafkaSecure: boolean;
  log(line: string): void;
}

/** One server process of a service: most services have one, a Kafka cluster one per node. */
export interface ServiceInstance {
  /** `kafka`, or `kafka node 2`: names the process in messages. */
  readonly label: string;
  /** Its own folder: working directory, pid file and log. */
  readonly dir: string;
  readonly ports: Array<{ port: number; env: string }>;
  readonly launch: LaunchSpec;
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
  /** Its processes when there is more than one; default: one, in `serviceDir(name)`, from `ports` and `launch`. */
  instances?(ctx: StackContext): ServiceInstance[];
  /** Refuses, before anything starts, a layout the service folder cannot hold (a data folder of another shape). */
  checkLayout?(ctx: StackContext): void;
  /**
   * Brings a ready server's users and access rules up to date (Redis ACL, ClickHouse users): run by every
   * `stack up`, also for a server that was already running, so a changed setting reaches it without a restart.
   */
  provision?(ctx: StackContext): Promise<void>;
  /** Whether the whole service (every instance) answers. */
  ready(ctx: StackContext): Promise<boolean>;
  version(ctx: StackContext): Promise<string>;
  endpoint(ctx: StackContext): string;
}
