/**
 * Vitest global setup: the tests talk to the real local stack. It is started once per run if it is not already
 * running, and afterwards only the services this run started are stopped again (a stack the developer had
 * running stays up).
 */
import { resolve } from 'node:path';
import { loadConfig } from '../../runtime/config/index.ts';
import { createStackContext, stackDown, stackStatus, stackUp } from '../../infra/local/stack.ts';
import type { ServiceName } from '../../infra/local/service.ts';

export default async function setup(): Promise<() => Promise<void>> {
  const root = resolve(import.meta.dirname, '../..');
  const ctx = createStackContext(loadConfig(), root, (line) => console.error(`[stack] ${line}`));
  const before = await stackStatus(ctx);
  const missing = before.filter((row) => row.state !== 'healthy').map((row) => row.name);
  let started: ServiceName[] = [];
  if (missing.length > 0) {
    const results = await stackUp(ctx, missing);
    started = results.filter((r) => r.action === 'started').map((r) => r.name);
  }
  return async () => {
    if (started.length > 0) await stackDown(ctx, started);
  };
}
