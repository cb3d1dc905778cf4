/**
 * `agent-streams k8s render|build|validate`: the fleet's Kubernetes manifests (infra/k8s/). `render` writes the
 * per-workload resources derived from the topology; `build` prints an overlay rendered by kustomize; `validate`
 * renders every overlay and checks each resource against the Kubernetes API, KEDA's and prometheus-operator's CRD
 * schemas, strictly (an unknown field fails).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadTopology } from './run.ts';
import { projectRoot } from '../paths.ts';
import { usageError } from '../args.ts';
import type { Command } from '../main.ts';

// Loaded on use: the runtime image need not carry the manifests' tooling for its other commands to start.
const fleet = (): Promise<typeof import('../../infra/k8s/fleet.ts')> => import('../../infra/k8s/fleet.ts');
const tools = (): Promise<typeof import('../../infra/k8s/validate.ts')> => import('../../infra/k8s/validate.ts');

async function render(check: boolean): Promise<number> {
  const { renderFleet, TOPOLOGY_FILE } = await fleet();
  const { k8sDir } = await tools();
  // The committed manifests are the topology's defaults: a developer's AS_FLEET_* must not leak into them.
  for (const name of Object.keys(process.env)) if (name.startsWith('AS_FLEET_')) delete process.env[name];
  const topology = await loadTopology(join(projectRoot, TOPOLOGY_FILE));
  const files = renderFleet(topology);
  const stale: string[] = [];
  for (const [path, content] of files) {
    const full = join(k8sDir, path);
    let current: string | undefined;
    try {
      current = readFileSync(full, 'utf8');
    } catch {
      current = undefined;
    }
    if (current === content) continue;
    stale.push(path);
    if (!check) {
      mkdirSync(dirname(full), { recursive: true });
      writeFileSync(full, content);
    }
  }
  if (check) {
    if (stale.length > 0) {
      console.error(
        `k8s: out of date with ${TOPOLOGY_FILE}: ${stale.join(', ')}; run 'agent-streams k8s render' and commit the result`,
      );
      return 1;
    }
    console.log(`k8s: ${files.size} generated files match ${TOPOLOGY_FILE}`);
    return 0;
  }
  console.log(
    stale.length === 0 ? `k8s: ${files.size} generated files already up to date` : `k8s: wrote ${stale.join(', ')}`,
  );
  return 0;
}

const options = { check: { type: 'boolean', default: false } } as const;

export const k8sCommand: Command = {
  summary: 'Kubernetes manifests: render them from the topology, build an overlay, validate every overlay',
  usage: 'k8s render [--check] | k8s build OVERLAY | k8s validate [OVERLAY...]',
  options,
  actions: ['render', 'build', 'validate'],
  async run(args) {
    const { positionals, values } = parseArgs({ args, allowPositionals: true, options });
    const [action, ...rest] = positionals;
    const log = (line: string): void => console.error(`k8s: ${line}`);
    if (action === 'render') return render(values.check);
    const { buildOverlay, listOverlays, validateManifests } = await tools();
    if (action === 'build') {
      const [overlay] = rest;
      if (!overlay) throw usageError(`k8s build needs an overlay: ${listOverlays().join(', ')}`);
      process.stdout.write(buildOverlay(overlay, log));
      return 0;
    }
    if (action === 'validate') {
      const overlays = rest.length > 0 ? rest : listOverlays();
      let failed = 0;
      for (const overlay of overlays) {
        const result = validateManifests(buildOverlay(overlay, log), log);
        const kinds = Object.entries(result.kinds)
          .map(([kind, n]) => `${n} ${kind}`)
          .join(', ');
        if (result.problems.length === 0)
          console.log(`k8s validate ${overlay}: ${result.resources} resources valid (${kinds})`);
        else {
          failed++;
          console.error(
            `k8s validate ${overlay}: ${result.problems.length} problems\n  ${result.problems.join('\n  ')}`,
          );
        }
      }
      return failed === 0 ? 0 : 1;
    }
    throw usageError(`k8s needs render, build or validate: ${this.usage}`);
  },
};
