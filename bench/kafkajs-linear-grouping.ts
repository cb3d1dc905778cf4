/**
 * Experiment, bench process only: replaces kafkajs 2.2.4's `groupMessagesPerPartition` (which copies the growing
 * per-partition array for every message — O(n²) per send; upstream fix proposed in tulios/kafkajs#1576, never
 * merged) with a linear version, to measure what the quadratic costs the engine and the baseline. Preload it:
 *
 *   npx tsx --import ./bench/kafkajs-linear-grouping.ts bench/runtime.ts
 *
 * It must run before kafkajs is loaded: kafkajs' sendMessages.js captures the function when it is first required.
 */
import { createRequire } from 'node:module';

type Partitioner = (args: { topic: string; partitionMetadata: unknown[]; message: unknown }) => number;

const require = createRequire(import.meta.url);
const path = require.resolve('kafkajs/src/producer/groupMessagesPerPartition.js');
require(path);
const cached = require.cache[path];
if (!cached) throw new Error(`kafkajs grouping module not in the require cache: ${path}`);
cached.exports = ({
  topic,
  partitionMetadata,
  messages,
  partitioner,
}: {
  topic: string;
  partitionMetadata: unknown[];
  messages: unknown[];
  partitioner: Partitioner;
}) => {
  const result: Record<number, unknown[]> = {};
  if (partitionMetadata.length === 0) return result;
  for (const message of messages) {
    const partition = partitioner({ topic, partitionMetadata, message });
    (result[partition] ??= []).push(message);
  }
  return result;
};
(globalThis as { agentStreamsBenchLinearGrouping?: boolean }).agentStreamsBenchLinearGrouping = true;
