/**
 * Apicurio Registry 3.0.9, a real Confluent-compatible schema registry (API at /apis/ccompat/v7), unpacked from
 * Maven Central into the cache. Schemas live in an H2 file under the stack folder so that ids survive a
 * restart along with the Kafka data that refers to them.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { mavenRun } from '../maven.ts';
import { hostTools } from '../tools.ts';
import type { LocalService, StackContext } from '../service.ts';

export const apicurioVersion = '3.0.9';
const appDir = (ctx: StackContext): string => join(ctx.cacheDir, 'registry', `apicurio-${apicurioVersion}`);
const runnerJar = (ctx: StackContext): string =>
  join(appDir(ctx), `apicurio-registry-app-${apicurioVersion}-runner.jar`);
const base = (ctx: StackContext): string => `http://127.0.0.1:${ctx.config.stack.registryPort}`;

export const registryService: LocalService = {
  name: 'registry',
  tools: [hostTools.java, hostTools.mvn],
  ports: (ctx) => [{ port: ctx.config.stack.registryPort, env: 'AS_STACK_REGISTRY_PORT' }],
  async prepare(ctx) {
    if (!existsSync(runnerJar(ctx))) {
      mavenRun(ctx, `Apicurio Registry ${apicurioVersion}`, [
        '-f',
        join(ctx.root, 'infra/local/registry/pom.xml'),
        'package',
        `-Dapicurio.dir=${appDir(ctx)}`,
      ]);
    }
    mkdirSync(join(ctx.serviceDir('registry'), 'h2'), { recursive: true });
  },
  launch(ctx) {
    const dir = ctx.serviceDir('registry');
    const port = ctx.config.stack.registryPort;
    return {
      command: 'java',
      args: [
        '-Xms32m',
        '-Xmx256m',
        '-XX:+UseSerialGC',
        '-XX:TieredStopAtLevel=1',
        '-Dquarkus.http.host=127.0.0.1',
        `-Dquarkus.http.port=${port}`,
        '-Dquarkus.management.host=127.0.0.1',
        '-Dapicurio.storage.kind=sql',
        '-Dapicurio.storage.sql.kind=h2',
        // WRITE_DELAY=0: a kill -9 must not lose a schema id that Kafka records already carry.
        `-Dapicurio.datasource.url=jdbc:h2:file:${join(dir, 'h2', 'registry')};DB_CLOSE_ON_EXIT=FALSE;WRITE_DELAY=0`,
        '-Dapicurio.datasource.jdbc.initial-size=2',
        '-Dapicurio.datasource.jdbc.min-size=2',
        '-Dapicurio.datasource.jdbc.max-size=10',
        // Without it a re-formatted copy of the same schema becomes a new version with a new id.
        '-Dapicurio.ccompat.use-canonical-hash=true',
        '-Dquarkus.http.access-log.enabled=false',
        '-Dquarkus.log.level=WARN',
        '-Dquarkus.log.category."io.apicurio".level=WARN',
        '-jar',
        runnerJar(ctx),
      ],
      cwd: dir,
    };
  },
  async ready(ctx) {
    const response = await fetch(`${base(ctx)}/apis/ccompat/v7/subjects`, { signal: AbortSignal.timeout(2000) });
    return response.ok;
  },
  async version(ctx) {
    const response = await fetch(`${base(ctx)}/apis/registry/v3/system/info`, { signal: AbortSignal.timeout(2000) });
    const info = (await response.json()) as { version?: string };
    return `apicurio ${info.version ?? 'unknown'}`;
  },
  endpoint: (ctx) => ctx.config.registry.url,
};
