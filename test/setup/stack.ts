/**
 * Vitest global setup: the tests talk to a real stack.
 * - Default (`TEST_STACK=local`): the local stack (`agent-streams stack up`), started once per run if it is not
 *   already running; afterwards only the services this run started are stopped again.
 * - `TEST_STACK=containers`, for machines with Docker: infra/docker-compose.yml through testcontainers, on the
 *   same endpoints.
 */
import { resolve } from 'node:path';
import { loadConfig } from '../../runtime/config/index.ts';
import { createStackContext, stackDown, stackProvision, stackStatus, stackUp } from '../../infra/local/stack.ts';
import type { ServiceName } from '../../infra/local/service.ts';
import { testStackKind } from '../support/stack-kind.ts';

const root = resolve(import.meta.dirname, '../..');

async function containers(): Promise<() => Promise<void>> {
  const { DockerComposeEnvironment, Wait } = await import('testcontainers');
  const environment = await new DockerComposeEnvironment(resolve(root, 'infra'), 'docker-compose.yml')
    .withWaitStrategy('registry-1', Wait.forHttp('/apis/ccompat/v7/subjects', 8080))
    .withWaitStrategy('clickhouse-1', Wait.forHttp('/ping', 8123))
    .withWaitStrategy('kafka-1', Wait.forLogMessage(/Kafka Server started/))
    .up();
  // The fleet's Redis ACL user, as `stack up` gives the local Redis.
  await stackProvision(createStackContext(loadConfig(), root), ['redis']);
  return async () => {
    await environment.down();
  };
}

export default async function setup(): Promise<() => Promise<void>> {
  if (testStackKind === 'containers') return containers();
  const ctx = createStackContext(loadConfig(), root, (line) => console.error(`[stack] ${line}`));
  const before = await stackStatus(ctx);
  const missing = before.filter((row) => row.state !== 'healthy').map((row) => row.name);
  let started: ServiceName[] = [];
  if (missing.length > 0) {
    const results = await stackUp(ctx, missing);
    started = results.filter((r) => r.action === 'started').map((r) => r.name);
  }
  // Users and ACL as the configuration wants them (the tests connect as the fleet's Redis user), also on a stack that
  // was already running.
  await stackProvision(
    ctx,
    before.filter((row) => row.state === 'healthy').map((row) => row.name),
  );
  return async () => {
    if (started.length > 0) await stackDown(ctx, started);
  };
}
