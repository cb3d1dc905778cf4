/**
 * `topology describe` (text like Kafka Streams' TopologyDescription, a mermaid graph, JSON) and `completion bash|zsh`,
 * generated from the command table. Neither needs a service.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it, vi } from 'vitest';
import { commands } from '../../cli/command-table.ts';
import { lines, runCli } from '../support/cli.ts';

// Each case starts the CLI a few times (a Node process each): a busy two-core machine must not fail them on time.
vi.setConfig({ testTimeout: 240_000 });

const fixture = ['topology', 'describe', 'test/fixtures/topologies/window-count.ts'];
const env = { AS_FIXTURE_APP: 'describe-app', AS_FIXTURE_INPUT: 'describe-app.input' };

describe('agent-streams topology describe', () => {
  it('lists sources, processors, stores and sinks with their topics, as text', async () => {
    const result = await runCli(fixture, { env });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout.trimEnd()).toBe(
      [
        'Topology describe-app: 1 sub-topologies (one consumer group each); dead letters to describe-app.dead-letters, late records to describe-app.late-records',
        'Topics:',
        '  describe-app.input (6 partitions)',
        '  describe-app.counts (6 partitions)',
        'Sub-topology: 0 counter (group describe-app.counter)',
        '  Source: counter-source (topics: [describe-app.input])',
        '    --> counter',
        '  Processor: counter (windowed: tumbling 1m, grace 10s; emit on close; stores: [counts])',
        '    --> counter-sink-describe-app.counts',
        '    <-- counter-source',
        '  Store: counts (Redis; changelog topic describe-app.counter.changelog)',
        '  Sink: counter-sink-describe-app.counts (topic: describe-app.counts; records WindowCount)',
        '    <-- counter',
      ].join('\n'),
    );
  });

  it('draws a mermaid flowchart and gives JSON', async () => {
    const mermaid = await runCli([...fixture, '--format', 'mermaid'], { env });
    expect(mermaid.code).toBe(0);
    const graph = lines(mermaid.stdout);
    expect(graph[0]).toBe('flowchart LR');
    expect(graph).toContain('  t0_describe_app_input --> p2_counter');
    expect(graph).toContain('  p2_counter -->|"WindowCount"| t1_describe_app_counts');
    expect(graph).toContain('  p2_counter <-.-> s3_counter_counts');
    const json = await runCli([...fixture, '--format', 'json'], { env });
    expect(JSON.parse(json.stdout)).toMatchObject({
      application: 'describe-app',
      processors: [
        {
          name: 'counter',
          group: 'describe-app.counter',
          sources: ['describe-app.input'],
          stores: [{ name: 'counts' }],
          sinks: [{ topic: 'describe-app.counts' }],
        },
      ],
    });
  });

  it('describes the market fleet: every processor, the router routes, the tables', async () => {
    const result = await runCli(['topology', 'describe', 'topologies/market-signals.ts']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('Sub-topology: 0 router (group market.router)');
    expect(result.stdout).toContain(
      'Sink: router-sink-market.signals.price (topic: market.signals.price; routes PriceTick)',
    );
    expect(result.stdout).toMatch(/Table: portfolios \(topic market\.table\.portfolios\)/);
  });

  it('rejects a format it does not draw', async () => {
    const result = await runCli([...fixture, '--format', 'dot'], { env });
    expect(result.code).toBe(2);
    expect(lines(result.stderr)).toEqual([
      'agent-streams topology: --format takes text, table, mermaid, json, got "dot"; see \'agent-streams topology --help\'',
    ]);
  });
});

/** What bash offers for a command line ending in `current`, with the generated script sourced. */
function bashComplete(script: string, words: string[]): string[] {
  const program = `${script}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _agent_streams; printf '%s\\n' "\${COMPREPLY[@]}"`;
  const result = spawnSync('bash', ['-c', program], { encoding: 'utf8' });
  expect(result.status, result.stderr).toBe(0);
  return lines(result.stdout);
}

describe('agent-streams completion', () => {
  it('bash completes commands, sub-commands and every flag of the command table', async () => {
    const result = await runCli(['completion', 'bash']);
    expect(result.code).toBe(0);
    const script = result.stdout;
    expect(bashComplete(script, ['agent-streams', 'fi'])).toEqual(['findings']);
    expect(bashComplete(script, ['agent-streams', 'findings', '--po'])).toEqual(['--portfolio']);
    expect(bashComplete(script, ['agent-streams', 'dead-letters', ''])).toEqual(
      expect.arrayContaining(['list', 'redrive', '--limit', '--format']),
    );
    expect(bashComplete(script, ['agent-streams', 'topology', 'de'])).toEqual(['describe']);
    for (const [name, command] of Object.entries(commands)) {
      expect(bashComplete(script, ['agent-streams', name.slice(0, -1)])).toContain(name);
      const flags = bashComplete(script, ['agent-streams', name, '--']);
      for (const flag of Object.keys(command.options ?? {})) expect(flags, `${name} --${flag}`).toContain(`--${flag}`);
    }
  });

  it('zsh: a #compdef script with every command and its flags', async () => {
    const result = await runCli(['completion', 'zsh']);
    expect(result.code).toBe(0);
    expect(result.stdout.startsWith('#compdef agent-streams')).toBe(true);
    for (const [name, command] of Object.entries(commands)) {
      expect(result.stdout).toMatch(new RegExp(`^    '${name}:`, 'm'));
      for (const flag of Object.keys(command.options ?? {}))
        expect(result.stdout).toMatch(new RegExp(`^    ${name}\\) _arguments .*'--${flag}[=\\[]`, 'm'));
    }
    // Where zsh is installed, the script must at least parse.
    const zsh = spawnSync('zsh', ['-n'], { input: result.stdout, encoding: 'utf8' });
    if (!zsh.error) expect(zsh.status, zsh.stderr).toBe(0);
  });

  it('an unknown shell is a usage error', async () => {
    const result = await runCli(['completion', 'fish']);
    expect(result.code).toBe(2);
    expect(lines(result.stderr)).toHaveLength(1);
  });
});
