import { parseArgs } from 'node:util';
import { loadConfig } from '../../runtime/config/index.ts';
import { listDeadLetters, redriveDeadLetters } from '../../runtime/engine/redrive.ts';
import { ATTEMPT_RETRY } from '../../runtime/engine/producer.ts';
import { loadTopology } from './run.ts';
import { usageError, type Command } from '../main.ts';
import { kafkaClient } from '../../runtime/kafka/client.ts';

export const deadLettersCommand: Command = {
  summary: "List an application's dead letters with their reasons, or re-drive them to their source topics (exactly once)",
  usage: 'dead-letters list|redrive <topology-file> [--limit N] [--json]',
  async run(args) {
    const { positionals, values } = parseArgs({ args, allowPositionals: true, options: { limit: { type: 'string', default: '100' }, json: { type: 'boolean', default: false } } });
    const [action, file] = positionals;
    if ((action !== 'list' && action !== 'redrive') || !file) throw usageError('dead-letters needs list or redrive and a topology file');
    const limit = Number(values.limit);
    if (!Number.isInteger(limit) || limit < 1) throw usageError(`--limit takes a positive whole number, got "${values.limit}"`);
    const config = loadConfig();
    const topology = await loadTopology(file);
    const kafka = kafkaClient(config, 'dead-letters', { retry: { ...ATTEMPT_RETRY } });
    if (action === 'redrive') {
      const sent = await redriveDeadLetters(kafka, topology.deadLetterTopic, `${topology.application}.dead-letters-redrive`, {
        groupOf: (processor) => topology.groupId(processor),
        outageToleranceMs: config.kafka.outageToleranceMs,
        log: (line) => console.error(`dead-letters: ${line}`),
      });
      console.log(`re-drove ${sent} dead letters from ${topology.deadLetterTopic} to their source topics`);
      return 0;
    }
    const letters = await listDeadLetters(kafka, topology.deadLetterTopic, limit);
    if (values.json) {
      console.log(JSON.stringify(letters, null, 2));
      return 0;
    }
    console.log(`${letters.length} dead letters in ${topology.deadLetterTopic}${letters.length === limit ? ` (first ${limit})` : ''}`);
    for (const d of letters) {
      console.log(`${d.source.topic}[${d.source.partition}]@${d.source.offset}  ${d.processor}  ${d.stage}  ${d.errorCode}  ${d.errorMessage.slice(0, 120)}`);
    }
    return 0;
  },
};
