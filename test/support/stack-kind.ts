import { AgentStreamsError, ErrorCode } from '../../runtime/errors.ts';

/** Which real stack the tests run against: `local` (default) or `containers` (Docker + testcontainers). */
export const testStackKind = ((): 'local' | 'containers' => {
  const kind = process.env.TEST_STACK ?? 'local';
  if (kind !== 'local' && kind !== 'containers') {
    throw new AgentStreamsError(ErrorCode.CONFIG_INVALID, `TEST_STACK must be "local" or "containers", got "${kind}".`);
  }
  return kind;
})();
