import { parseArgs } from 'node:util';
import { logLevel } from 'kafkajs';
import { loadConfig } from '../../runtime/config/index.ts';
import { listDeadLetters, redriveDeadLetters } from '../../runtime/engine/redrive.ts';
import { ATTEMPT_RETRY } from '../../runtime/engine/producer.ts';
import { AgentStreamsError, ErrorCode } from '../../runtime/errors.ts';
import { loadTopology } from './run.ts';
import { expectPositionals, usageError, wholeNumber } from '../args.ts';
import { checkFormat, dataFormats, formatOption, formatRows } from '../format.ts';
import type { Command } from '../main.ts';
import { kafkaClient } from '../../runtime/kafka/client.ts';
import { shortKafkaRetry } from '../kafka.ts';

const options = { limit: { type: 'string', default: '100' }, format: formatOption } as const;

export const deadLettersCommand: Command = {
  summary:
    "List an application's dead letters with their reasons, or re-drive them to their source topics (exactly once)",
  usage: 'dead-letters list|redrive <topology-file> [--limit N] [--format table|json]',
  options,
  actions: ['list', 'redrive'],
  files: true,
  async run(args) {
    const { positionals, values } = parseArgs({ args, allowPositionals: true, options });
    const [action, file] = expectPositionals('dead-letters', positionals, ['list|redrive', 'topology-file']);
    if (action !== 'list' && action !== 'redrive')
      throw usageError(`dead-letters needs list or redrive, got "${action}"`);
    const limit = wholeNumber('limit', values.limit, 1);
    const format = checkFormat(values.format, dataFormats);
    const config = loadConfig();
    const topology = await loadTopology(file!);
    const kafka = kafkaClient(config, 'dead-letters', {
      retry: { ...ATTEMPT_RETRY },
      connectionTimeout: shortKafkaRetry.connectionTimeout,
      logLevel: logLevel.NOTHING,
    });
    // The topic is created by the application's first member: without it there is nothing to list or re-drive, and
    // kafkajs would only say "This server does not host this topic-partition".
    const admin = kafka.admin();
    await admin.connect();
    try {
      if (!(await admin.listTopics()).includes(topology.deadLetterTopic)) {
        throw new AgentStreamsError(
          ErrorCode.TOPIC_NOT_FOUND,
          `application "${topology.application}" has no dead-letter topic ${topology.deadLetterTopic} on ${config.kafka.brokers.join(',')}: its members have never run there, or this is not the application you meant (check the topology's application name); start a member once (\`agent-streams run ${file} --processor NAME\`) to create it`,
        );
      }
    } finally {
      await admin.disconnect();
    }
    if (action === 'redrive') {
      const sent = await redriveDeadLetters(
        kafka,
        topology.deadLetterTopic,
        `${topology.application}.dead-letters-redrive`,
        {
          groupOf: (processor) => topology.groupId(processor),
          outageToleranceMs: config.kafka.outageToleranceMs,
          log: (line) => console.error(`dead-letters: ${line}`),
        },
      );
      console.log(`re-drove ${sent} dead letters from ${topology.deadLetterTopic} to their source topics`);
      return 0;
    }
    const letters = await listDeadLetters(kafka, topology.deadLetterTopic, limit);
    if (format === 'json') {
      console.log(JSON.stringify(letters, null, 2));
      return 0;
    }
    console.log(
      `${letters.length} dead letters in ${topology.deadLetterTopic}${letters.length === limit ? ` (first ${limit})` : ''}`,
    );
    const rows = letters.map((d) => ({
      source: `${d.source.topic}[${d.source.partition}]@${d.source.offset}`,
      processor: d.processor,
      stage: d.stage,
      code: d.errorCode,
      reason: d.errorMessage,
    }));
    if (rows.length > 0) console.log(formatRows(rows, 'table'));
    return 0;
  },
};
