/**
 * What a failed ClickHouse insert means for the rows in it. Three answers, because each needs a different reaction:
 * - `retriable`: the server or the path to it is unwell (refused, reset, timeout, too many parts, memory). Waiting
 *   and sending the same rows again is right; dropping them never is.
 * - `data`: the server parsed the body and refused a value (bad enum, wrong type, malformed JSON). Sending the same
 *   rows again fails the same way; the offending row must be found and handed back for dead-lettering.
 * - `fatal`: the insert cannot work for any row (unknown table or column, authentication, permissions, a bug on our
 *   side). Neither retrying nor dead-lettering helps; the operator must act.
 *
 * ClickHouse 18.16 reports errors as `Code: 27, e.displayText() = DB::Exception: …` without the `(TYPE_NAME)` suffix
 * that @clickhouse/client parses, so the code is read from the message here. Every ClickHouse error arrives as
 * HTTP 500, so the status alone says nothing: the code decides.
 */

export const insertFailureKinds = ['retriable', 'data', 'fatal'] as const;
export type InsertFailureKind = (typeof insertFailureKinds)[number];

/** Server trouble that passes: overload, merges behind, memory, timeouts, network between nodes. */
const retriableCodes = new Set([
  3, // UNEXPECTED_END_OF_FILE: our body is always whole lines, so a cut-off body is the transport's doing
  159, // TIMEOUT_EXCEEDED
  164, // READONLY (a replica or server briefly read-only while starting)
  173, // CANNOT_ALLOCATE_MEMORY
  202, // TOO_MANY_SIMULTANEOUS_QUERIES
  209, // SOCKET_TIMEOUT
  210, // NETWORK_ERROR
  236, // ABORTED
  241, // MEMORY_LIMIT_EXCEEDED
  242, // TABLE_IS_READ_ONLY
  243, // NOT_ENOUGH_SPACE: waiting for disk beats losing rows
  252, // TOO_MANY_PARTS: merges are behind; back off and they catch up
  319, // UNKNOWN_STATUS_OF_INSERT
  394, // QUERY_WAS_CANCELLED (server shutting down)
  425, // SYSTEM_ERROR
  439, // CANNOT_SCHEDULE_TASK
  999, // KEEPER_EXCEPTION
  1000, // POCO_EXCEPTION: mostly network errors inside the server
]);

/** The server parsed the body and refused a value: a property of some row, not of the server. */
const dataCodes = new Set([
  6, // CANNOT_PARSE_TEXT
  26, // CANNOT_PARSE_QUOTED_STRING (also: null in a non-Nullable String)
  27, // CANNOT_PARSE_INPUT_ASSERTION_FAILED
  32, // ATTEMPT_TO_READ_AFTER_EOF
  33, // CANNOT_READ_ALL_DATA
  36, // BAD_ARGUMENTS (unknown enum element on current releases)
  38, // CANNOT_PARSE_DATE
  41, // CANNOT_PARSE_DATETIME
  49, // 18.16 reports an unknown Enum8 element with this code
  53, // TYPE_MISMATCH
  69, // ARGUMENT_OUT_OF_BOUND
  70, // CANNOT_CONVERT_TYPE
  72, // CANNOT_PARSE_NUMBER (e.g. a negative value for a UInt)
  117, // INCORRECT_DATA (e.g. an unknown JSON field)
  131, // TOO_LARGE_STRING_SIZE
  691, // UNKNOWN_ELEMENT_OF_ENUM
]);

/** Node and undici socket errors: the request may or may not have reached the server. */
const networkErrnos = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'ECONNABORTED',
  'ENOTFOUND',
]);

export function clickHouseCodeOf(error: unknown): number | undefined {
  if (!(error instanceof Error)) return undefined;
  const fromProperty = (error as { code?: unknown }).code;
  if (typeof fromProperty === 'string' && /^\d+$/.test(fromProperty)) return Number(fromProperty);
  const match = /\bCode: (\d+)[.,]/.exec(error.message);
  return match ? Number(match[1]) : undefined;
}

/** 1-based row number a parse error points at (`(at row 12)`), if the server said. */
export function rowHintOf(error: unknown): number | undefined {
  if (!(error instanceof Error)) return undefined;
  const match = /\(at row (\d+)\)/.exec(error.message);
  return match ? Number(match[1]) : undefined;
}

/** UNKNOWN_TABLE / UNKNOWN_DATABASE: final on a running server, passing while it starts or shuts down. */
export function isMissingObject(error: unknown): boolean {
  const code = clickHouseCodeOf(error);
  return code === 60 || code === 81;
}

export function classifyInsertError(error: unknown): InsertFailureKind {
  const code = clickHouseCodeOf(error);
  if (code !== undefined) {
    if (retriableCodes.has(code)) return 'retriable';
    if (dataCodes.has(code)) return 'data';
    return 'fatal';
  }
  // Mistakes in our own code must surface, not loop forever.
  if (
    error instanceof TypeError ||
    error instanceof RangeError ||
    error instanceof SyntaxError ||
    error instanceof ReferenceError
  )
    return 'fatal';
  const errno = error instanceof Error ? (error as { code?: unknown }).code : undefined;
  if (typeof errno === 'string' && (networkErrnos.has(errno) || errno.startsWith('UND_ERR'))) return 'retriable';
  // Anything else without a ClickHouse code came from between us and the server (a proxy's 502/503 page, a socket
  // hang-up, the client's "Timeout error."): the rows are fine, the path is not.
  return 'retriable';
}
