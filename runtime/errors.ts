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
  SINK_OPTIONS_INVALID: 'AS_SINK_OPTIONS_INVALID',
  SINK_BACKPRESSURE: 'AS_SINK_BACKPRESSURE',
  SINK_ROW_INVALID: 'AS_SINK_ROW_INVALID',
  SINK_ROW_REJECTED: 'AS_SINK_ROW_REJECTED',
  SINK_INSERT_FAILED: 'AS_SINK_INSERT_FAILED',
  SINK_CLOSED: 'AS_SINK_CLOSED',
  CONNECTOR_OPTIONS_INVALID: 'AS_CONNECTOR_OPTIONS_INVALID',
  INPUT_UNREADABLE: 'AS_INPUT_UNREADABLE',
  RECORD_INVALID: 'AS_RECORD_INVALID',
  PRODUCE_FAILED: 'AS_PRODUCE_FAILED',
  INGEST_LISTEN_FAILED: 'AS_INGEST_LISTEN_FAILED',
  INGEST_UNAUTHENTICATED: 'AS_INGEST_UNAUTHENTICATED',
  INGEST_RATE_LIMITED: 'AS_INGEST_RATE_LIMITED',
  INGEST_PAYLOAD_TOO_LARGE: 'AS_INGEST_PAYLOAD_TOO_LARGE',
  INGEST_BAD_JSON: 'AS_INGEST_BAD_JSON',
  INGEST_UNSUPPORTED_MEDIA_TYPE: 'AS_INGEST_UNSUPPORTED_MEDIA_TYPE',
  INGEST_NOT_FOUND: 'AS_INGEST_NOT_FOUND',
  INGEST_METHOD_NOT_ALLOWED: 'AS_INGEST_METHOD_NOT_ALLOWED',
  INGEST_INTERNAL: 'AS_INGEST_INTERNAL',
  LLM_OPTIONS_INVALID: 'AS_LLM_OPTIONS_INVALID',
  LLM_RATE_LIMITED: 'AS_LLM_RATE_LIMITED',
  LLM_OVERLOADED: 'AS_LLM_OVERLOADED',
  LLM_TIMEOUT: 'AS_LLM_TIMEOUT',
  LLM_SPEND_LIMIT: 'AS_LLM_SPEND_LIMIT',
  LLM_API_ERROR: 'AS_LLM_API_ERROR',
  LLM_BUDGET_EXHAUSTED: 'AS_LLM_BUDGET_EXHAUSTED',
  LLM_CIRCUIT_OPEN: 'AS_LLM_CIRCUIT_OPEN',
  LLM_CIRCUIT_TRANSITION: 'AS_LLM_CIRCUIT_TRANSITION',
  LLM_INVALID_OUTPUT: 'AS_LLM_INVALID_OUTPUT',
  LLM_BATCH_FAILED: 'AS_LLM_BATCH_FAILED',
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
