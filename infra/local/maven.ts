/** Fetches JVM artefacts from Maven Central into the project's own git-ignored repository (.cache/m2). */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { AgentStreamsError, ErrorCode } from '../../runtime/errors.ts';
import type { StackContext } from './service.ts';

export function mavenRun(ctx: StackContext, what: string, args: string[]): void {
  const started = Date.now();
  ctx.log(`fetching ${what} from Maven Central (cached in ${join(ctx.cacheDir, 'm2')})`);
  const result = spawnSync('mvn', ['-B', '-q', `-Dmaven.repo.local=${join(ctx.cacheDir, 'm2')}`, ...args], {
    cwd: ctx.root,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (result.status !== 0) {
    const output = `${result.stdout ?? ''}${result.stderr ?? ''}`.split('\n').slice(-30).join('\n');
    throw new AgentStreamsError(
      ErrorCode.STACK_FETCH_FAILED,
      `Could not fetch ${what} with Maven (exit ${result.status ?? result.signal}). Check that Maven Central is reachable ` +
        `(a proxy goes in ~/.m2/settings.xml) and run again; partial downloads are resumed.\n${output}`,
      { retriable: true, details: { what } },
    );
  }
  ctx.log(`fetched ${what} in ${((Date.now() - started) / 1000).toFixed(1)}s`);
}
