/**
 * `agent-streams image build|base`: the container image, built with podman (infra/image/). `build` makes the local
 * base image first when it is missing (Debian minbase + Node from npm; no registry is needed), then the
 * Containerfile; `--base-image` builds on any other Node 20 image instead.
 */
import { parseArgs } from 'node:util';
import { usageError } from '../args.ts';
import type { Command } from '../main.ts';

const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(0)} MB`;

const options = {
  tag: { type: 'string' },
  'base-image': { type: 'string' },
  'no-cache': { type: 'boolean', default: false },
  force: { type: 'boolean', default: false },
} as const;

export const imageCommand: Command = {
  summary: 'Build the container image with podman (image build), or only its local Debian + Node base (image base)',
  usage: 'image build [--tag localhost/agent-streams:local] [--base-image IMAGE] [--no-cache] | image base [--force]',
  options,
  actions: ['build', 'base'],
  async run(args) {
    const { positionals, values } = parseArgs({ args, allowPositionals: true, options });
    const [action, ...rest] = positionals;
    if (rest.length > 0) throw usageError(`unexpected arguments: ${rest.join(' ')}`);
    const log = (line: string): void => console.error(`image: ${line}`);
    if (action === 'base') {
      const { buildBaseImage } = await import('../../infra/image/base.ts');
      const { imageSize } = await import('../../infra/image/podman.ts');
      const base = buildBaseImage({ force: values.force, log });
      console.log(
        `${base.image}: ${base.built ? `built in ${base.seconds.toFixed(1)} s` : 'up to date'}, ${mb(imageSize(base.image))}`,
      );
      return 0;
    }
    if (action === 'build') {
      const { buildImage } = await import('../../infra/image/build.ts');
      const result = await buildImage({
        ...(values.tag ? { tag: values.tag } : {}),
        ...(values['base-image'] ? { baseImage: values['base-image'] } : {}),
        noCache: values['no-cache'],
        log,
      });
      console.log(
        `${result.image}: ${mb(result.sizeBytes)} on ${result.baseImage}; base ${result.baseSeconds.toFixed(1)} s, image ${result.appSeconds.toFixed(1)} s`,
      );
      return 0;
    }
    throw usageError('image needs an action: build or base');
  },
};
