/**
 * What `stack up --secure` adds to the local Kafka: a SASL_SSL listener next to the plaintext one, with a CA, a
 * broker certificate and a client certificate made with openssl, and one user who may log in with PLAIN,
 * SCRAM-SHA-256 or SCRAM-SHA-512. Everything is kept in `<stack>/kafka/security/` (keys 0600), created once and
 * reused; `client.env` there holds the AS_KAFKA_* settings a client needs.
 *
 * The plaintext listener stays on its port (the rest of the tooling and the test suite use it); controller and
 * inter-broker traffic stay on loopback plaintext. Kafka 4.x reads PEM key and trust stores directly.
 */
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../../../runtime/config/index.ts';
import { AgentStreamsError, ErrorCode } from '../../../runtime/errors.ts';
import { ensureTools, hostTools } from '../tools.ts';

export const secureListenerName = 'SECURE';
export const kafkaUser = 'agent-streams';

export interface KafkaSecurityFiles {
  dir: string;
  caCert: string;
  /** Broker key and certificate in one PEM file (Kafka's PEM keystore). */
  brokerStore: string;
  clientCert: string;
  clientKey: string;
  credentials: string;
}

interface Credentials {
  username: string;
  password: string;
}

export function kafkaSecurityFiles(kafkaDir: string): KafkaSecurityFiles {
  const dir = join(kafkaDir, 'security');
  return {
    dir,
    caCert: join(dir, 'ca.pem'),
    brokerStore: join(dir, 'broker-keystore.pem'),
    clientCert: join(dir, 'client.pem'),
    clientKey: join(dir, 'client.key'),
    credentials: join(dir, 'credentials.json'),
  };
}

/** Whether this stack folder's Kafka was set up secure (then it stays secure without the flag, like its size). */
export function recordedKafkaSecure(kafkaDir: string): boolean {
  return existsSync(kafkaSecurityFiles(kafkaDir).credentials);
}

export function readKafkaCredentials(kafkaDir: string): Credentials {
  return JSON.parse(readFileSync(kafkaSecurityFiles(kafkaDir).credentials, 'utf8')) as Credentials;
}

function openssl(args: string[], cwd: string): void {
  const result = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (result.status !== 0) {
    throw new AgentStreamsError(
      ErrorCode.STACK_START_FAILED,
      `openssl ${args.slice(0, 2).join(' ')} failed in ${cwd}:\n${result.stdout}${result.stderr}`,
    );
  }
}

/** A key and a certificate signed by the stack's CA, valid for the loopback names. */
function issue(dir: string, name: string, subject: string, extensions: string): void {
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`], dir);
  openssl(['req', '-new', '-key', `${name}.key`, '-subj', subject, '-out', `${name}.csr`], dir);
  writeFileSync(join(dir, `${name}.ext`), extensions);
  openssl(
    [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '825',
      '-sha256',
      '-extfile',
      `${name}.ext`,
      '-out',
      `${name}.pem`,
    ],
    dir,
  );
  chmodSync(join(dir, `${name}.key`), 0o600);
}

/** Creates the CA, certificates and user once; later calls keep them. */
export function ensureKafkaSecurity(kafkaDir: string): KafkaSecurityFiles {
  const files = kafkaSecurityFiles(kafkaDir);
  if (existsSync(files.credentials) && existsSync(files.brokerStore)) return files;
  ensureTools([hostTools.openssl], () => {});
  mkdirSync(files.dir, { recursive: true, mode: 0o700 });
  openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      'ca.key',
      '-subj',
      '/CN=agent-streams local CA',
      '-days',
      '825',
      '-sha256',
      '-out',
      'ca.pem',
    ],
    files.dir,
  );
  chmodSync(join(files.dir, 'ca.key'), 0o600);
  issue(
    files.dir,
    'broker',
    '/CN=localhost',
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n',
  );
  issue(files.dir, 'client', `/CN=${kafkaUser}`, 'extendedKeyUsage=clientAuth\n');
  // Kafka's PEM keystore wants the PKCS#8 key followed by the certificate chain.
  openssl(['pkcs8', '-topk8', '-nocrypt', '-in', 'broker.key', '-out', 'broker.pk8'], files.dir);
  writeFileSync(
    files.brokerStore,
    `${readFileSync(join(files.dir, 'broker.pk8'), 'utf8')}${readFileSync(join(files.dir, 'broker.pem'), 'utf8')}${readFileSync(files.caCert, 'utf8')}`,
    { mode: 0o600 },
  );
  for (const scratch of ['broker.csr', 'broker.ext', 'broker.pk8', 'client.csr', 'client.ext', 'ca.srl'])
    rmSync(join(files.dir, scratch), { force: true });
  const credentials: Credentials = { username: kafkaUser, password: randomBytes(18).toString('base64url') };
  writeFileSync(files.credentials, `${JSON.stringify(credentials)}\n`, { mode: 0o600 });
  return files;
}

/** `kafka-storage format --add-scram` arguments: the user for both SCRAM mechanisms. */
export function scramFormatArgs(kafkaDir: string): string[] {
  const { username, password } = readKafkaCredentials(kafkaDir);
  return ['SCRAM-SHA-256', 'SCRAM-SHA-512'].flatMap((mechanism) => [
    '--add-scram',
    `${mechanism}=[name=${username},password=${password}]`,
  ]);
}

/** The server.properties lines of the SASL_SSL listener (the listener itself is added to `listeners`). */
export function secureListenerProperties(kafkaDir: string): string {
  const files = kafkaSecurityFiles(kafkaDir);
  const { username, password } = readKafkaCredentials(kafkaDir);
  const prefix = `listener.name.${secureListenerName.toLowerCase()}`;
  return [
    '############################# SASL_SSL listener (stack up --secure) #############################',
    'sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512',
    `${prefix}.ssl.keystore.type=PEM`,
    `${prefix}.ssl.keystore.location=${files.brokerStore}`,
    `${prefix}.ssl.truststore.type=PEM`,
    `${prefix}.ssl.truststore.location=${files.caCert}`,
    // Mutual TLS and a SASL login: a client needs the stack's client certificate and the user's password.
    `${prefix}.ssl.client.auth=required`,
    `${prefix}.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_${username}="${password}";`,
    `${prefix}.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;`,
    `${prefix}.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;`,
    '',
  ].join('\n');
}

/** The client settings for the secure listener(s), as a config overlay and as the env file users source. */
export type SecureKafkaSettings = Pick<
  Config['kafka'],
  'brokers' | 'ssl' | 'sslCaFile' | 'sslCertFile' | 'sslKeyFile' | 'saslMechanism' | 'saslUsername' | 'saslPassword'
>;

export function secureClientSettings(
  kafkaDir: string,
  brokers: string[],
  mechanism: Config['kafka']['saslMechanism'] = 'scram-sha-512',
): SecureKafkaSettings {
  const files = kafkaSecurityFiles(kafkaDir);
  const { username, password } = readKafkaCredentials(kafkaDir);
  return {
    brokers,
    ssl: true,
    sslCaFile: files.caCert,
    sslCertFile: files.clientCert,
    sslKeyFile: files.clientKey,
    saslMechanism: mechanism,
    saslUsername: username,
    saslPassword: password,
  };
}

export function writeClientEnv(kafkaDir: string, brokers: string[]): string {
  const s = secureClientSettings(kafkaDir, brokers);
  const file = join(kafkaSecurityFiles(kafkaDir).dir, 'client.env');
  const lines = [
    `AS_KAFKA_BROKERS=${s.brokers.join(',')}`,
    'AS_KAFKA_SSL=true',
    `AS_KAFKA_SSL_CA_FILE=${s.sslCaFile}`,
    `AS_KAFKA_SSL_CERT_FILE=${s.sslCertFile}`,
    `AS_KAFKA_SSL_KEY_FILE=${s.sslKeyFile}`,
    `AS_KAFKA_SASL_MECHANISM=${s.saslMechanism}`,
    `AS_KAFKA_SASL_USERNAME=${s.saslUsername}`,
    `AS_KAFKA_SASL_PASSWORD=${s.saslPassword}`,
  ];
  writeFileSync(file, `${lines.join('\n')}\n`, { mode: 0o600 });
  return file;
}
