/**
 * cli/failure.ts on its own (no service needed): errors shaped as each client library throws them become the one line
 * the CLI prints. The CLI-level cases, against the real services, are in errors.test.ts.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentStreamsError, ErrorCode } from '../../runtime/errors.ts';
import { describeFailure, EXIT_RUNTIME, EXIT_USAGE, STACK_HINT } from '../../cli/failure.ts';

const saved = { ...process.env };
beforeEach(() => {
  Object.assign(process.env, {
    AS_KAFKA_BROKERS: '127.0.0.1:19092',
    AS_REGISTRY_URL: 'http://127.0.0.1:18081/apis/ccompat/v7',
    AS_REDIS_URL: 'redis://u:p@127.0.0.1:16379',
    AS_CLICKHOUSE_URL: 'http://127.0.0.1:18123',
  });
  delete process.env.AS_DEBUG;
});
afterEach(() => {
  process.env = { ...saved };
});

const errno = (message: string, code: string, port?: number): Error =>
  Object.assign(new Error(message), { code, ...(port === undefined ? {} : { port, address: '127.0.0.1' }) });

describe('describeFailure', () => {
  it('a parse error is a usage error naming the flag and its likely spelling', () => {
    const parse = Object.assign(
      new TypeError(
        "Unknown option '--portfolo'. To specify a positional argument starting with a '-', place it at the end of the command after '--', as in '-- \"--portfolo\"",
      ),
      { code: 'ERR_PARSE_ARGS_UNKNOWN_OPTION' },
    );
    expect(describeFailure(parse, 'findings', ['portfolio', 'since', 'format'])).toEqual({
      exitCode: EXIT_USAGE,
      line: "agent-streams findings: unknown option --portfolo (did you mean --portfolio?); see 'agent-streams findings --help'",
    });
  });

  it('kafkajs: retries exhausted over a refused connection', () => {
    const cause = Object.assign(errno('Connection error: connect ECONNREFUSED 127.0.0.1:19092', 'ECONNREFUSED'), {
      name: 'KafkaJSConnectionError',
      broker: '127.0.0.1:19092',
    });
    const outer = Object.assign(new Error('Connection error: connect ECONNREFUSED 127.0.0.1:19092'), {
      name: 'KafkaJSNumberOfRetriesExceeded',
      cause,
    });
    expect(describeFailure(outer, 'lag')).toEqual({
      exitCode: EXIT_RUNTIME,
      line: `agent-streams lag: Kafka at 127.0.0.1:19092 is unreachable (ECONNREFUSED; AS_KAFKA_BROKERS): ${STACK_HINT}`,
    });
  });

  it('the registry client: the refusal is only in the message (mappersmith), wrapped as AS_REGISTRY_UNAVAILABLE', () => {
    const response = Object.assign(
      new Error('Confluent_Schema_Registry - Error, status 400: connect ECONNREFUSED 127.0.0.1:18081'),
      { name: 'ResponseError', status: 400 },
    );
    const ours = new AgentStreamsError(ErrorCode.REGISTRY_UNAVAILABLE, 'Schema registry lookup of id 9 failed', {
      retriable: true,
      cause: response,
    });
    expect(describeFailure(ours, 'tail').line).toBe(
      `agent-streams tail: The schema registry at http://127.0.0.1:18081/apis/ccompat/v7 is unreachable (ECONNREFUSED; AS_REGISTRY_URL): ${STACK_HINT}`,
    );
  });

  it('Redis (ioredis) and ClickHouse: matched by the port of the refused connection', () => {
    expect(describeFailure(errno('connect ECONNREFUSED 127.0.0.1:16379', 'ECONNREFUSED', 16379), 'table').line).toBe(
      `agent-streams table: Redis at redis://127.0.0.1:16379 is unreachable (ECONNREFUSED; AS_REDIS_URL): ${STACK_HINT}`,
    );
    expect(describeFailure(errno('connect ECONNREFUSED 127.0.0.1:18123', 'ECONNREFUSED', 18123), 'findings').line).toBe(
      `agent-streams findings: ClickHouse at http://127.0.0.1:18123 is unreachable (ECONNREFUSED; AS_CLICKHOUSE_URL): ${STACK_HINT}`,
    );
  });

  it('an outage the runtime gave up on (AS_BROKER_UNAVAILABLE) names Kafka', () => {
    const ours = new AgentStreamsError(
      ErrorCode.BROKER_UNAVAILABLE,
      'Kafka was unavailable for longer than AS_KAFKA_OUTAGE_TOLERANCE_MS',
      { retriable: false },
    );
    expect(describeFailure(ours, 'run').line).toBe(
      `agent-streams run: Kafka at 127.0.0.1:19092 is unreachable (no broker answered; AS_KAFKA_BROKERS): ${STACK_HINT}`,
    );
  });

  it('our own errors print their code and message on one line; a TLS failure is not mistaken for an outage', () => {
    const tls = new AgentStreamsError(
      ErrorCode.KAFKA_TLS_FAILED,
      "The broker refused this client's TLS certificate: set AS_KAFKA_SSL_CERT_FILE.",
      { cause: errno('socket hang up', 'ECONNRESET') },
    );
    expect(describeFailure(tls, 'dead-letters')).toEqual({
      exitCode: EXIT_RUNTIME,
      line: "agent-streams dead-letters: AS_KAFKA_TLS_FAILED: The broker refused this client's TLS certificate: set AS_KAFKA_SSL_CERT_FILE.",
    });
    const invalid = new AgentStreamsError(
      ErrorCode.TOPOLOGY_INVALID,
      'Invalid topology "x":\n  - processor "a" has no inputs\n  - topic "b" needs 1–1000 partitions',
    );
    expect(describeFailure(invalid, 'run').line).toBe(
      'agent-streams run: AS_TOPOLOGY_INVALID: Invalid topology "x": processor "a" has no inputs; topic "b" needs 1–1000 partitions',
    );
  });

  it('anything else: name and message, and the stack only with AS_DEBUG=1', () => {
    const bug = new RangeError('Invalid array length');
    expect(describeFailure(bug, 'tail').line).toBe(
      'agent-streams tail: unexpected RangeError: Invalid array length (AS_DEBUG=1 prints the stack trace; please report it)',
    );
    process.env.AS_DEBUG = '1';
    const debug = describeFailure(bug, 'tail').line.split('\n');
    expect(debug[0]).toBe('agent-streams tail: unexpected RangeError: Invalid array length');
    expect(debug.slice(1).join('\n')).toMatch(/^RangeError: Invalid array length\n\s+at /);
  });
});
