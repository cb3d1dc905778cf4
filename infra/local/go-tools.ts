/**
 * Tools built from the Go module proxy (manifest validators, kustomize, an OpenTelemetry Collector). Each is
 * built once with `go install module/path@version` into `.cache/go/bin/<name>@<version>/`, with the module cache
 * in `.cache/go/mod`, so a fresh clone builds them and a second run finds them.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync } from 'node:fs';
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
export function ensureGoTool(
  tool: GoTool,
  log: (line: string) => void = () => {},
  cacheDir = join(projectRoot, '.cache'),
): string {
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
    execFileSync('go', ['install', `${tool.pkg}@${tool.version}`], {
      env: { ...goCacheEnv(cacheDir), GOBIN: bin },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  } catch (error) {
    const stderr = String((error as { stderr?: Buffer }).stderr ?? '')
      .trim()
      .split('\n')
      .slice(-5)
      .join(' | ');
    throw new AgentStreamsError(
      ErrorCode.STACK_TOOL_MISSING,
      `go install ${tool.pkg}@${tool.version} failed (${stderr}); check that the Go module proxy is reachable and retry.`,
      { cause: error, retriable: true },
    );
  }
  return path;
}

export interface GoModuleBuild {
  /** Name of the binary. */
  name: string;
  /** A Go main module of this repository (go.mod, go.sum, *.go), e.g. infra/otel-collector. */
  dir: string;
  why: string;
}

/**
 * Returns the path of a binary built from a Go main module kept in this repository (a tool that is assembled from
 * library modules rather than installed, such as the test OpenTelemetry Collector), building it first if this clone
 * has not. The binary is cached under a hash of the module's go.mod, go.sum and sources, so a change rebuilds it.
 */
export function ensureGoModuleBuild(
  build: GoModuleBuild,
  log: (line: string) => void = () => {},
  cacheDir = join(projectRoot, '.cache'),
): string {
  const dir = resolve(projectRoot, build.dir);
  const hash = createHash('sha256');
  for (const file of readdirSync(dir)
    .filter((f) => f === 'go.mod' || f === 'go.sum' || f.endsWith('.go'))
    .sort())
    hash.update(file).update(readFileSync(join(dir, file)));
  const bin = resolve(cacheDir, 'go', 'bin', `${build.name}@${hash.digest('hex').slice(0, 12)}`);
  const path = join(bin, build.name);
  if (existsSync(path)) return path;
  if (findCommand('go') === undefined) {
    throw new AgentStreamsError(
      ErrorCode.STACK_TOOL_MISSING,
      `Missing go (needed to build ${build.name}: ${build.why}). Install Go 1.24 or later, then run the command again.`,
    );
  }
  mkdirSync(bin, { recursive: true });
  const started = Date.now();
  log(`building ${build.name} from ${build.dir} with modules from the Go module proxy (once per clone)`);
  try {
    // Built to a temporary name and renamed, so that an interrupted build never leaves a binary that looks done.
    execFileSync('go', ['build', '-trimpath', '-o', `${path}.partial`, '.'], {
      cwd: dir,
      env: goCacheEnv(cacheDir),
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    renameSync(`${path}.partial`, path);
  } catch (error) {
    const stderr = String((error as { stderr?: Buffer }).stderr ?? '')
      .trim()
      .split('\n')
      .slice(-5)
      .join(' | ');
    throw new AgentStreamsError(
      ErrorCode.STACK_TOOL_MISSING,
      `go build of ${build.dir} failed (${stderr}); check that the Go module proxy is reachable and retry.`,
      { cause: error, retriable: true },
    );
  }
  log(`built ${build.name} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return path;
}
