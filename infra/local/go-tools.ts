/**
 * Tools built from the Go module proxy (manifest validators, kustomize, an OpenTelemetry Collector). Each is
 * built once with `go install module/path@version` into `.cache/go/bin/<name>@<version>/`, with the module cache
 * in `.cache/go/mod`, so a fresh clone builds them and a second run finds them.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { AgentStreamsError, ErrorCode } from '../../runtime/errors.ts';
import { findCommand } from './tools.ts';

export interface GoTool {
  /** Binary name `go install` produces (the last element of the package path). */
  name: string;
  /** Package path to install, e.g. `sigs.k8s.io/kustomize/kustomize/v5`. */
  pkg: string;
  version: string;
  why: string;
}

const projectRoot = resolve(import.meta.dirname, '..', '..');

/** Where Go keeps downloaded modules and its build cache for the project's tools; git-ignored. */
export function goCacheEnv(cacheDir = join(projectRoot, '.cache')): NodeJS.ProcessEnv {
  return {
    ...process.env,
    GOMODCACHE: resolve(cacheDir, 'go', 'mod'),
    GOCACHE: resolve(cacheDir, 'go', 'build'),
    GOFLAGS: '-buildvcs=false -mod=mod',
    GOTOOLCHAIN: 'local',
    CGO_ENABLED: '0',
  };
}

/** Returns the path of the tool's binary, building it first if this clone has not built it yet. */
export function ensureGoTool(tool: GoTool, log: (line: string) => void = () => {}, cacheDir = join(projectRoot, '.cache')): string {
  const bin = resolve(cacheDir, 'go', 'bin', `${tool.name}@${tool.version}`);
  const path = join(bin, tool.name);
  if (existsSync(path)) return path;
  if (findCommand('go') === undefined) {
    throw new AgentStreamsError(
      ErrorCode.STACK_TOOL_MISSING,
      `Missing go (needed to build ${tool.name}: ${tool.why}). Install Go 1.22 or later, then run the command again.`,
    );
  }
  mkdirSync(bin, { recursive: true });
  log(`building ${tool.name} ${tool.version} from the Go module proxy (once per clone)`);
  try {
    execFileSync('go', ['install', `${tool.pkg}@${tool.version}`], { env: { ...goCacheEnv(cacheDir), GOBIN: bin }, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (error) {
    const stderr = String((error as { stderr?: Buffer }).stderr ?? '').trim().split('\n').slice(-5).join(' | ');
    throw new AgentStreamsError(
      ErrorCode.STACK_TOOL_MISSING,
      `go install ${tool.pkg}@${tool.version} failed (${stderr}); check that the Go module proxy is reachable and retry.`,
      { cause: error, retriable: true },
    );
  }
  return path;
}
