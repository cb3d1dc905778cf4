/**
 * Splitting what one transaction produces into sends the broker accepts and kafkajs handles quickly.
 */

/** Most messages in one send: kafkajs groups a send's messages by partition in time quadratic in their number (bench/, BENCHMARKS.md). */
export const SEND_CHUNK = 2000;

/**
 * Most bytes (keys, values, headers) in one send. The broker refuses a record batch above message.max.bytes (1 MiB
 * by default), and a send of one partition's messages is one record batch: a batch whose outputs, dead letters or
 * changelog exceed it would fail, and be retried, forever.
 */
export const SEND_BYTES = 512 * 1024;

function messageBytes(message: {
  key?: Buffer | string | null;
  value: Buffer | string | null;
  headers?: Record<string, Buffer | string | undefined>;
}): number {
  let bytes = 64 + Buffer.byteLength(message.key ?? '') + Buffer.byteLength(message.value ?? '');
  for (const [name, value] of Object.entries(message.headers ?? {}))
    bytes += Buffer.byteLength(name) + Buffer.byteLength(value ?? '');
  return bytes;
}

/** Splits messages, in order, into sends of at most SEND_CHUNK messages and SEND_BYTES bytes (a larger single message goes alone). */
export function sendChunks<M extends Parameters<typeof messageBytes>[0]>(messages: readonly M[]): M[][] {
  const chunks: M[][] = [];
  let chunk: M[] = [];
  let bytes = 0;
  for (const message of messages) {
    const size = messageBytes(message);
    if (chunk.length > 0 && (chunk.length >= SEND_CHUNK || bytes + size > SEND_BYTES)) {
      chunks.push(chunk);
      chunk = [];
      bytes = 0;
    }
    chunk.push(message);
    bytes += size;
  }
  if (chunk.length > 0) chunks.push(chunk);
  return chunks;
}
