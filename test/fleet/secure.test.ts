/**
 * The fleet over SASL_SSL: a private broker started as `stack up --secure` starts one (CA, broker and client
 * certificates from openssl, mutual TLS, SCRAM users), and every Kafka client of the project — the CLI's `table`
 * and `dead-letters`, the `feed`, `run` members and the `sink` — reaches it through the one client factory with the
 * AS_KAFKA_SSL_* and AS_KAFKA_SASL_* settings. Wrong credentials fail in seconds with one line that names the setting.
 * ClickHouse is written by the least-privilege sink user and read back by the reader user (`findings`).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMember, stopMembers, waitUntilStarted, type Member } from '../../cli/fleet.ts';
import { projectRoot } from '../../cli/paths.ts';
import { kafkaClient } from '../../runtime/kafka/client.ts';
import { migrateDatabase } from '../../sinks/clickhouse/schema.ts';
import { openClickHouse } from '../../sinks/clickhouse/client.ts';
import type { Config } from '../../runtime/config/index.ts';
import { fleetClickHouseUsers } from '../support/clickhouse-users.ts';
import { freePort, startPrivateBroker, type PrivateBroker } from '../support/private-broker.ts';
import { uniqueName } from '../support/stack.ts';

const TOPOLOGY = join(projectRoot, 'topologies/market-signals.ts');

let broker: PrivateBroker & { plaintextConfig: Config };
let tmp: string;

/** The client settings of `config.kafka` as the environment a process reads. */
function kafkaEnv(config: Config): Record<string, string> {
  const k = config.kafka;
  return {
    AS_KAFKA_BROKERS: k.brokers.join(','),
    AS_KAFKA_SSL: String(k.ssl),
    AS_KAFKA_SSL_CA_FILE: k.sslCaFile,
    AS_KAFKA_SSL_CERT_FILE: k.sslCertFile,
    AS_KAFKA_SSL_KEY_FILE: k.sslKeyFile,
    AS_KAFKA_SASL_MECHANISM: k.saslMechanism,
    AS_KAFKA_SASL_USERNAME: k.saslUsername,
    AS_KAFKA_SASL_PASSWORD: k.saslPassword,
  };
}

/** The kafka settings a client.env file holds. */
function secureSettings(env: Record<string, string>): Partial<Config['kafka']> {
  return {
    brokers: env.AS_KAFKA_BROKERS!.split(','),
    ssl: env.AS_KAFKA_SSL === 'true',
    sslCaFile: env.AS_KAFKA_SSL_CA_FILE!,
    sslCertFile: env.AS_KAFKA_SSL_CERT_FILE!,
    sslKeyFile: env.AS_KAFKA_SSL_KEY_FILE!,
    saslMechanism: 'scram-sha-512',
    saslUsername: env.AS_KAFKA_SASL_USERNAME!,
    saslPassword: env.AS_KAFKA_SASL_PASSWORD!,
  };
}

/** Runs the CLI to its end; resolves with its exit code, output and how long it took. */
function cli(
  args: string[],
  env: Record<string, string>,
  timeoutMs = 60_000,
): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const started = Date.now();
  const child = spawn(process.execPath, [join(projectRoot, 'cli/bin.mjs'), ...args], {
    cwd: projectRoot,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve) =>
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - started });
    }),
  );
}

/** The CLI's own error line (agent-streams <command>: AS_…: …), without the JSON log lines. */
const errorLines = (stderr: string): string[] => stderr.split('\n').filter((line) => line.startsWith('agent-streams '));

beforeAll(async () => {
  broker = await startPrivateBroker('secure', {}, { secure: true });
  tmp = mkdtempSync(join(tmpdir(), 'as-secure-'));
}, 180_000);

afterAll(async () => {
  await broker?.remove();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('Kafka over SASL_SSL (stack up --secure)', () => {
  it('`stack up --secure` starts a broker with both listeners and writes the client settings; the stack folder stays secure', async () => {
    const [kafkaPort, controllerPort, securePort] = [await freePort(), await freePort(), await freePort()];
    const stackEnv = {
      AS_STACK_DIR: `.stack/secure-cli-${Date.now().toString(36)}`,
      AS_STACK_KAFKA_PORT: String(kafkaPort),
      AS_STACK_KAFKA_CONTROLLER_PORT: String(controllerPort),
      AS_STACK_KAFKA_SECURE_PORT: String(securePort),
    };
    try {
      const up = await cli(['stack', 'up', '--secure', 'kafka'], stackEnv, 120_000);
      expect(up.code, up.stderr).toBe(0);
      expect(up.stdout).toContain(`SASL_SSL on 127.0.0.1:${securePort}`);
      const clientEnv = Object.fromEntries(
        readFileSync(join(projectRoot, stackEnv.AS_STACK_DIR, 'kafka/security/client.env'), 'utf8')
          .trim()
          .split('\n')
          .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
      );
      expect(clientEnv).toMatchObject({
        AS_KAFKA_BROKERS: `127.0.0.1:${securePort}`,
        AS_KAFKA_SSL: 'true',
        AS_KAFKA_SASL_MECHANISM: 'scram-sha-512',
        AS_KAFKA_SASL_USERNAME: 'agent-streams',
      });
      const secure = { ...broker.config, kafka: { ...broker.config.kafka, ...secureSettings(clientEnv) } };
      const admin = kafkaClient(secure, 'secure-test').admin();
      await admin.connect();
      await admin.disconnect();
      // Without the flag, `up` and `status` keep the secure listener of a folder set up secure.
      const status = await cli(['stack', 'status', 'kafka'], stackEnv);
      expect(status.code, status.stdout + status.stderr).toBe(0);
      const again = await cli(['stack', 'up', 'kafka'], stackEnv);
      expect(again.stdout).toMatch(/kafka\s+already running/);
      expect(again.stdout).toContain(`SASL_SSL on 127.0.0.1:${securePort}`);
    } finally {
      await cli(['stack', 'down', 'kafka'], stackEnv);
      rmSync(join(projectRoot, stackEnv.AS_STACK_DIR), { recursive: true, force: true });
    }
  }, 180_000);

  it('PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 log in with the client certificate; the plaintext listener stays', async () => {
    for (const saslMechanism of ['plain', 'scram-sha-256', 'scram-sha-512'] as const) {
      const admin = kafkaClient(
        { ...broker.config, kafka: { ...broker.config.kafka, saslMechanism } },
        'secure-test',
      ).admin();
      await admin.connect();
      expect(Array.isArray(await admin.listTopics())).toBe(true);
      await admin.disconnect();
    }
    const plain = kafkaClient(broker.plaintextConfig, 'secure-test').admin();
    await plain.connect();
    await plain.disconnect();
  });

  it('runs feed, members, sink and the CLI over SASL_SSL; findings and alerts reach ClickHouse as the sink user', async () => {
    const database = uniqueName('secure');
    const application = database.replaceAll('_', '-');
    const eventsTopic = `${application}.market.events`;
    await migrateDatabase({ ...broker.config, clickhouse: { ...broker.config.clickhouse, database } }, projectRoot);
    // Migrations as the admin; the sink (and the analyst's LLM audit) insert as the sink user, `findings` reads as the reader.
    const users = await fleetClickHouseUsers(database);
    const env = {
      ...kafkaEnv(broker.config),
      ...users.env,
      AS_FLEET_APP: application,
      AS_FLEET_EVENTS_TOPIC: eventsTopic,
      ANTHROPIC_API_KEY: '',
    };

    const loaded = await cli(
      ['table', 'load', TOPOLOGY, 'portfolios', join(projectRoot, 'topologies/portfolios.json')],
      env,
    );
    expect(loaded.stderr + loaded.stdout).toMatch(/loaded \d+ rows into table portfolios/);
    expect(loaded.code).toBe(0);

    const members: Member[] = [
      ...['router', 'price-move', 'portfolio-exposure', 'alert-analyst'].map((name) =>
        startMember(TOPOLOGY, name, env),
      ),
      startMember(TOPOLOGY, 'clickhouse-sink', env, { command: ['sink', TOPOLOGY] }),
    ];
    const ch = openClickHouse({ ...broker.config, clickhouse: { ...broker.config.clickhouse, database } });
    try {
      await waitUntilStarted(members, 120_000);
      const feed = await cli(
        [
          'feed',
          '--topic',
          eventsTopic,
          '--symbols',
          'ACME,BOLT',
          '--rate',
          '20',
          '--duration',
          '4m',
          '--scenario',
          'drop:ACME:6%:2m@1m',
          '--fast',
        ],
        env,
      );
      expect(feed.code, feed.stderr).toBe(0);

      const deadline = Date.now() + 120_000;
      let findings: Array<Record<string, unknown>> = [];
      let alerts: Array<Record<string, unknown>> = [];
      while (Date.now() < deadline) {
        findings = await (
          await ch.query({
            query: "SELECT symbol, agent FROM findings FINAL WHERE symbol = 'ACME'",
            format: 'JSONEachRow',
          })
        ).json();
        alerts = await (
          await ch.query({ query: "SELECT symbol FROM alerts FINAL WHERE symbol = 'ACME'", format: 'JSONEachRow' })
        ).json();
        if (findings.length > 0 && alerts.length > 0) break;
        await sleep(1_000);
      }
      expect(findings.some((f) => f.agent === 'price-move')).toBe(true);
      expect(alerts.length).toBeGreaterThan(0);

      const letters = await cli(['dead-letters', 'list', TOPOLOGY], env);
      expect(letters.code, letters.stderr).toBe(0);
      expect(letters.stdout).toContain(`dead letters in ${application}`);

      const shown = await cli(['findings', '--since', '36500d', '--format', 'json'], env);
      expect(shown.code, shown.stderr).toBe(0);
      expect((JSON.parse(shown.stdout) as Array<{ symbol: string }>).some((f) => f.symbol === 'ACME')).toBe(true);
    } finally {
      expect(await stopMembers(members)).toEqual(members.map(() => 0));
      await ch.close();
      users.remove();
      const admin = openClickHouse(broker.config, { database: null });
      await admin.command({ query: `DROP DATABASE IF EXISTS ${database}` });
      await admin.close();
    }
  }, 240_000);

  it('a wrong password fails in seconds, naming AS_KAFKA_SASL_PASSWORD — the CLI and a member alike', async () => {
    const env = {
      ...kafkaEnv(broker.config),
      AS_KAFKA_SASL_PASSWORD: 'not-the-password',
      AS_FLEET_APP: uniqueName('wrong').replaceAll('_', '-'),
    };
    const listed = await cli(['dead-letters', 'list', TOPOLOGY], env);
    expect(listed.code).toBe(1);
    expect(errorLines(listed.stderr)).toEqual([
      expect.stringMatching(/AS_KAFKA_AUTH_FAILED: .*AS_KAFKA_SASL_USERNAME and AS_KAFKA_SASL_PASSWORD\.$/),
    ]);
    expect(listed.ms).toBeLessThan(20_000);

    const member = await cli(['run', TOPOLOGY, '--processor', 'router'], { ...env, AS_METRICS_PORT: '0' });
    expect(member.code).not.toBe(0);
    expect(member.stderr + member.stdout).toContain('AS_KAFKA_SASL_PASSWORD');
    expect(member.ms).toBeLessThan(20_000);
  });

  it('a CA that did not sign the broker names AS_KAFKA_SSL_CA_FILE; no client certificate names AS_KAFKA_SSL_CERT_FILE; a missing file is refused at start', async () => {
    const otherCa = join(tmp, 'other-ca.pem');
    const made = spawnSync('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      join(tmp, 'other-ca.key'),
      '-subj',
      '/CN=other',
      '-days',
      '2',
      '-out',
      otherCa,
    ]);
    expect(made.status).toBe(0);
    const wrongCa = await cli(['dead-letters', 'list', TOPOLOGY], {
      ...kafkaEnv(broker.config),
      AS_KAFKA_SSL_CA_FILE: otherCa,
    });
    expect(wrongCa.code).toBe(1);
    expect(errorLines(wrongCa.stderr)).toEqual([
      expect.stringMatching(/AS_KAFKA_TLS_FAILED: .*AS_KAFKA_SSL_CA_FILE must name the CA that signed it/),
    ]);
    expect(wrongCa.ms).toBeLessThan(20_000);

    const noCert = await cli(['dead-letters', 'list', TOPOLOGY], {
      ...kafkaEnv(broker.config),
      AS_KAFKA_SSL_CERT_FILE: '',
      AS_KAFKA_SSL_KEY_FILE: '',
    });
    expect(noCert.code).toBe(1);
    expect(errorLines(noCert.stderr)).toEqual([expect.stringMatching(/AS_KAFKA_TLS_FAILED: .*AS_KAFKA_SSL_CERT_FILE/)]);

    const missing = await cli(['dead-letters', 'list', TOPOLOGY], {
      ...kafkaEnv(broker.config),
      AS_KAFKA_SSL_CA_FILE: join(tmp, 'nope.pem'),
    });
    expect(missing.code).toBe(1);
    expect(errorLines(missing.stderr)).toEqual([
      expect.stringMatching(/AS_KAFKA_SSL_CA_FILE=.*nope\.pem: cannot read the CA certificate \(ENOENT\)/),
    ]);
  });
});
