/**
 * The CLI's one error path, driven as a user meets it: every failure is one line on stderr with its cause and a fix,
 * no stack trace, exit 2 for a wrong command line and 1 for a runtime failure (a service down, a topic missing).
 */
import { describe, expect, it, vi } from 'vitest';
import { spawnSync } from 'node:child_process';
import { closedPort, lines, root, runCli, type CliResult } from '../support/cli.ts';
import { config, uniqueName } from '../support/stack.ts';

// Each case starts the CLI a few times (a Node process each): a busy two-core machine must not fail them on time.
vi.setConfig({ testTimeout: 240_000 });

const STACK_HINT = 'is the stack up? `cli/agent-streams stack status`';

/** One line, no stack frames, no JSON log lines: what a person reads. */
function expectOneLine(result: CliResult, code: number, ...parts: Array<string | RegExp>): void {
  expect(result.code, `stderr: ${result.stderr}`).toBe(code);
  const errorLines = lines(result.stderr);
  expect(errorLines, result.stderr).toHaveLength(1);
  expect(result.stderr).not.toMatch(/^\s+at /m);
  expect(result.stdout).not.toMatch(/"level":/);
  for (const part of parts) expect(errorLines[0]).toMatch(part);
}

describe('usage errors exit 2 with one line', () => {
  it('an unknown flag names itself and the flag it resembles', async () => {
    expectOneLine(
      await runCli(['findings', '--portfolo', 'growth']),
      2,
      "agent-streams findings: unknown option --portfolo (did you mean --portfolio?); see 'agent-streams findings --help'",
    );
  });

  it('a flag without its value, an unknown command, a bad --format', async () => {
    expectOneLine(await runCli(['findings', '--limit']), 2, /--limit/, /--help/);
    expectOneLine(await runCli(['findngs']), 2, 'unknown command "findngs" (did you mean "findings"?)');
    expectOneLine(
      await runCli(['findings', '--format', 'yaml']),
      2,
      '--format takes table, json, markdown, got "yaml"',
    );
    expectOneLine(
      await runCli(['dead-letters', 'list', 'topologies/market-signals.ts', '--json']),
      2,
      'unknown option --json (did you mean --format json?)',
    );
  });

  it('commands that parse many flags (feed, replay, ingest) go through the same path', async () => {
    expectOneLine(
      await runCli(['feed', '--rat', '5', '--dry-run']),
      2,
      'agent-streams feed: unknown option --rat (did you mean --rate?)',
    );
    expectOneLine(await runCli(['replay', 'a.jsonl', 'b.jsonl']), 2, 'replay needs exactly one file');
    expectOneLine(await runCli(['ingest', '--prot', '1']), 2, 'unknown option --prot (did you mean --port?)');
  });

  it('a reader that stops early is not an error', async () => {
    const result = spawnSync(
      'bash',
      ['-o', 'pipefail', '-c', 'node cli/bin.mjs config --settings | head -1; echo "exit ${PIPESTATUS[0]}"'],
      { cwd: root, encoding: 'utf8' },
    );
    expect(result.stderr).toBe('');
    expect(lines(result.stdout)).toEqual([expect.stringMatching(/^AS_KAFKA_BROKERS /), 'exit 0']);
  });

  it('a topology file that does not exist', async () => {
    expectOneLine(
      await runCli(['run', 'topologies/nope.ts', '--processor', 'router']),
      2,
      'topology file topologies/nope.ts does not exist',
      /e\.g\. topologies\/market-signals\.ts/,
    );
    expectOneLine(
      await runCli(['topology', 'describe', 'topologies/nope.ts']),
      2,
      'topology file topologies/nope.ts does not exist',
    );
  });

  it('sink, table and migrate reject extra arguments', async () => {
    expectOneLine(
      await runCli(['sink', 'topologies/market-signals.ts', 'extra']),
      2,
      'sink takes 1 argument (topology-file), got extra "extra"',
    );
    expectOneLine(
      await runCli(['table', 'show', 'topologies/market-signals.ts', 'portfolios', 'extra']),
      2,
      'got extra "extra"',
    );
    expectOneLine(
      await runCli(['table', 'load', 'topologies/market-signals.ts', 'portfolios', 'rows.json', 'extra']),
      2,
      'got extra "extra"',
    );
    expectOneLine(await runCli(['migrate', 'now']), 2, 'migrate takes no arguments, got extra "now"');
  });

  it('a processor the topology does not have', async () => {
    expectOneLine(
      await runCli(['run', 'topologies/market-signals.ts', '--processor', 'nope']),
      2,
      'topology market has no processor "nope"; it has router,',
    );
  });
});

describe('runtime errors exit 1 with one line', () => {
  it('Kafka unreachable: lag, tail, dead-letters say so and point at the stack', async () => {
    const env = { AS_KAFKA_BROKERS: `127.0.0.1:${await closedPort()}` };
    for (const args of [['lag'], ['tail', 'market.events'], ['dead-letters', 'list', 'topologies/market-signals.ts']]) {
      expectOneLine(
        await runCli(args, { env }),
        1,
        `Kafka at ${env.AS_KAFKA_BROKERS} is unreachable (ECONNREFUSED; AS_KAFKA_BROKERS): ${STACK_HINT}`,
      );
    }
  });

  it('the registry unreachable: schemas register and produce', async () => {
    const env = { AS_REGISTRY_URL: `http://127.0.0.1:${await closedPort()}` };
    expectOneLine(
      await runCli(['schemas', 'register'], { env }),
      1,
      `The schema registry at ${env.AS_REGISTRY_URL}`,
      /is unreachable/,
      STACK_HINT,
    );
    expectOneLine(
      await runCli(['produce', 'x', '--type', 'Event'], { env, stdin: '{}\n' }),
      1,
      /The schema registry at .* is unreachable/,
      STACK_HINT,
    );
  });

  it('Redis unreachable, and Redis refusing the user', async () => {
    const port = await closedPort();
    expectOneLine(
      await runCli(['table', 'show', 'topologies/market-signals.ts', 'portfolios'], {
        env: { AS_REDIS_URL: `redis://u:p@127.0.0.1:${port}` },
      }),
      1,
      `Redis at redis://127.0.0.1:${port} is unreachable (ECONNREFUSED; AS_REDIS_URL): ${STACK_HINT}`,
    );
    const wrong = `redis://agent-streams:wrong-password@127.0.0.1:${config.stack.redisPort}`;
    expectOneLine(
      await runCli(['table', 'show', 'topologies/market-signals.ts', 'portfolios'], { env: { AS_REDIS_URL: wrong } }),
      1,
      "Redis refused the fleet's user (WRONGPASS",
      'AS_REDIS_URL',
    );
  });

  it('ClickHouse unreachable: findings and migrate', async () => {
    const env = { AS_CLICKHOUSE_URL: `http://127.0.0.1:${await closedPort()}` };
    expectOneLine(
      await runCli(['findings'], { env }),
      1,
      `ClickHouse at ${env.AS_CLICKHOUSE_URL} is unreachable (ECONNREFUSED; AS_CLICKHOUSE_URL): ${STACK_HINT}`,
    );
    expectOneLine(await runCli(['migrate'], { env }), 1, `ClickHouse at ${env.AS_CLICKHOUSE_URL} is unreachable`);
  });

  it('members too: run with Kafka down (past its outage tolerance), sink with ClickHouse down', async () => {
    // A member logs JSON to stdout (its log); the failure is still one line on stderr.
    const member = (result: CliResult, ...parts: string[]): void => {
      expect(result.code, result.stderr).toBe(1);
      expect(lines(result.stderr)).toHaveLength(1);
      for (const part of parts) expect(result.stderr).toContain(part);
    };
    const kafka = `127.0.0.1:${await closedPort()}`;
    member(
      await runCli(['run', 'test/fixtures/topologies/window-count.ts', '--processor', 'counter'], {
        env: {
          AS_KAFKA_BROKERS: kafka,
          AS_KAFKA_OUTAGE_TOLERANCE_MS: '1000',
          AS_METRICS_PORT: '0',
          AS_FIXTURE_APP: 'down-app',
          AS_FIXTURE_INPUT: 'down-app.input',
        },
      }),
      `agent-streams run: Kafka at ${kafka} is unreachable`,
      STACK_HINT,
    );
    const clickhouse = `http://127.0.0.1:${await closedPort()}`;
    member(
      await runCli(['sink', 'topologies/market-signals.ts'], {
        env: { AS_CLICKHOUSE_URL: clickhouse, AS_METRICS_PORT: '0' },
      }),
      `agent-streams sink: ClickHouse at ${clickhouse} is unreachable`,
      STACK_HINT,
    );
  });

  it('dead-letters list of an application whose dead-letter topic does not exist', async () => {
    const application = uniqueName('nodlq').replaceAll('_', '-');
    const result = await runCli(['dead-letters', 'list', 'test/fixtures/topologies/window-count.ts'], {
      env: { AS_FIXTURE_APP: application, AS_FIXTURE_INPUT: `${application}.input` },
    });
    expectOneLine(
      result,
      1,
      `AS_TOPIC_NOT_FOUND: application "${application}" has no dead-letter topic ${application}.dead-letters`,
      /start a member once/,
    );
  });

  it('a topic that does not exist: tail', async () => {
    const topic = uniqueName('missing').replaceAll('_', '-');
    expectOneLine(await runCli(['tail', topic]), 1, `AS_TOPIC_NOT_FOUND: topic ${topic} does not exist`);
  });
});
