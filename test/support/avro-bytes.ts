/** Hand-made Avro bytes for tests of the bounded decoder: hostile frames are built from these. */
import type { SchemaNode } from '../../runtime/serde/bounded.ts';

/** Zig-zag varint of `n` (exact for |n| < 2^53). */
export function varint(n: number): Buffer {
  let z = n >= 0 ? n * 2 : -n * 2 - 1;
  const out: number[] = [];
  while (z >= 0x80) {
    out.push((z % 0x80) | 0x80);
    z = Math.floor(z / 0x80);
  }
  out.push(z);
  return Buffer.from(out);
}

/** The shortest valid encoding of a value of `node` (unions take their first branch). */
export function minimal(node: SchemaNode): Buffer {
  switch (node.kind) {
    case 'null':
      return Buffer.alloc(0);
    case 'float':
      return Buffer.alloc(4);
    case 'double':
      return Buffer.alloc(8);
    case 'fixed':
      return Buffer.alloc(node.size);
    case 'union':
      return Buffer.concat([varint(0), minimal(node.branches[0]!)]);
    case 'record':
      return Buffer.concat(node.fields.map((f) => minimal(f.type)));
    default:
      return Buffer.from([0]);
  }
}
