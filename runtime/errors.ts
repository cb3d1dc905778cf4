/**
 * One error base for the whole project. Every error carries an enumerated code, whether retrying can help,
 * structured details, and the cause it wraps. Messages say what failed, why, and what to do about it.
 */

export const ErrorCode = {
  CONFIG_INVALID: 'AS_CONFIG_INVALID',
  STACK_TOOL_MISSING: 'AS_STACK_TOOL_MISSING',
  STACK_PORT_TAKEN: 'AS_STACK_PORT_TAKEN',
  STACK_FETCH_FAILED: 'AS_STACK_FETCH_FAILED',
  STACK_START_FAILED: 'AS_STACK_START_FAILED',
  STACK_NOT_READY: 'AS_STACK_NOT_READY',
  MIGRATION_FAILED: 'AS_MIGRATION_FAILED',
  SCHEMA_INVALID: 'AS_SCHEMA_INVALID',
  SCHEMA_INCOMPATIBLE: 'AS_SCHEMA_INCOMPATIBLE',
  REGISTRY_UNAVAILABLE: 'AS_REGISTRY_UNAVAILABLE',
  DESERIALIZE: 'AS_DESERIALIZE',
  SERIALIZE: 'AS_SERIALIZE',
  QUERY_PARAM_INVALID: 'AS_QUERY_PARAM_INVALID',
  USAGE: 'AS_USAGE',
  DURATION_INVALID: 'AS_DURATION_INVALID',
  WINDOW_INVALID: 'AS_WINDOW_INVALID',
  TOPOLOGY_INVALID: 'AS_TOPOLOGY_INVALID',
  PROCESS: 'AS_PROCESS',
  NO_ROUTE: 'AS_NO_ROUTE',
  MISSING_KEY: 'AS_MISSING_KEY',
  STATE_FENCED: 'AS_STATE_FENCED',
  STATE_LOST: 'AS_STATE_LOST',
  TASK_FENCED: 'AS_TASK_FENCED',
  RETRY_POLICY_INVALID: 'AS_RETRY_POLICY_INVALID',
  ABORTED: 'AS_ABORTED',
  OBSERVABILITY_LISTEN_FAILED: 'AS_OBSERVABILITY_LISTEN_FAILED',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface AgentStreamsErrorOptions {
  retriable?: boolean;
  details?: Record<string, unknown>;
  cause?: unknown;
}

export class AgentStreamsError extends Error {
  readonly code: ErrorCode;
  readonly retriable: boolean;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: AgentStreamsErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AgentStreamsError';
    this.code = code;
    this.retriable = options.retriable ?? false;
    this.details = options.details ?? {};
  }

  override toString(): string {
    return `${this.code}: ${this.message}`;
  }
}

export function isAgentStreamsError(value: unknown, code?: ErrorCode): value is AgentStreamsError {
  return value instanceof AgentStreamsError && (code === undefined || value.code === code);
}
