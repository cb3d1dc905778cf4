/** Seeded test input: reproducible keyed events with some disorder and a few late records. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface TestEvent {
  key: string;
  eventTime: number;
  amount: number;
}

/**
 * `count` events over `keys` keys, 10 ms of event time apart; about 2% arrive up to 5 s out of order (within a
 * 10 s grace) and about 0.5% arrive 2 minutes late (beyond it).
 */
export function seededEvents(count: number, keys: number, seed: number, start = Date.UTC(2026, 0, 1)): TestEvent[] {
  const random = mulberry32(seed);
  return Array.from({ length: count }, (_, i) => {
    const r = random();
    const shift = r < 0.005 ? -120_000 : r < 0.025 ? -Math.floor(random() * 5_000) : 0;
    return {
      key: `k${Math.floor(random() * keys)}`,
      eventTime: start + i * 10 + shift,
      amount: Math.floor(random() * 100),
    };
  });
}
