/**
 * Per-partition state in Redis, fenced by changelog offset.
 *
 * Layout (every key of one task shares the hash tag `{as:<group>:<partition>}`, so a task lives in one Redis
 * Cluster slot and its Lua scripts stay single-slot):
 *   <prefix>:ckpt           hash: changelog (last changelog offset applied), streamTime, offset (next input offset),
 *                           keys and bytes (state keys held and their value bytes: the state size metrics)
 *   <prefix>:s:<store:key>  JSON StateEntry {v, c}
 *   <prefix>:due            sorted set of state keys by the close time of their earliest open window
 *
 * `apply` is one Lua script: it applies a batch's changes only if their changelog offset is above the one
 * recorded, so a replayed or late (zombie) apply is a no-op. Kafka stays the source of truth: the changelog
 * topic holds every change, and `ckpt.changelog` says how far Redis has applied it.
 *
 * Expiry is one rule for all three: every apply gives the state keys it writes, the checkpoint and the due set the
 * same TTL, so a task's keys live as long as its last write. A state key can still expire before the due set does
 * (its key was written long ago, others since): `read` drops a due entry whose state is gone when it meets it, so
 * the due set never grows with entries that point at nothing. An idle task's checkpoint expiring with its state is
 * the same as a Redis loss: the next batch rebuilds from the changelog.
 */
import type { Redis } from 'ioredis';
import type { StateEntry } from '../engine/batch.ts';
import type { Metrics } from '../observability/metrics.ts';

const READ = `
local prefix = ARGV[1]
local ckpt = redis.call('HGETALL', KEYS[1])
local values = {}
for i = 3, #ARGV do values[#values + 1] = redis.call('GET', prefix .. ':s:' .. ARGV[i]) or false end
local due = {}
if ARGV[2] ~= '' then
  local members = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
  for _, m in ipairs(members) do
    local value = redis.call('GET', prefix .. ':s:' .. m)
    if value then
      due[#due + 1] = m
      due[#due + 1] = value
    else
      -- Its state expired (TTL): the entry points at nothing and would be met again on every read.
      redis.call('ZREM', KEYS[2], m)
    end
  end
end
return {ckpt, values, due, redis.call('ZCARD', KEYS[2])}
`;

const APPLY = `
local prefix = ARGV[1]
local offset = tonumber(ARGV[2])
local current = tonumber(redis.call('HGET', KEYS[1], 'changelog') or '-1')
if offset <= current then return 0 end
-- Changes are deltas on top of the state the batch read: if Redis no longer holds that state (flushed, or
-- restarted and lost its last writes), applying them would leave a silent hole. Refuse; the caller rebuilds.
if ARGV[6] ~= '' and current ~= tonumber(ARGV[6]) then return -1 end
local ttl = tonumber(ARGV[5])
local dKeys, dBytes = 0, 0
local i = 7
while i <= #ARGV do
  local key, value, closeAt = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local full = prefix .. ':s:' .. key
  local old = redis.call('STRLEN', full)
  if value == '' then
    if old > 0 then dKeys, dBytes = dKeys - 1, dBytes - old end
    redis.call('DEL', full)
    redis.call('ZREM', KEYS[2], key)
  else
    if old == 0 then dKeys = dKeys + 1 end
    dBytes = dBytes + #value - old
    redis.call('SET', full, value, 'PX', ttl)
    if closeAt == '' then redis.call('ZREM', KEYS[2], key) else redis.call('ZADD', KEYS[2], closeAt, key) end
  end
  i = i + 3
end
redis.call('HSET', KEYS[1], 'changelog', ARGV[2], 'streamTime', ARGV[3], 'offset', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'keys', dKeys)
redis.call('HINCRBY', KEYS[1], 'bytes', dBytes)
-- The checkpoint and the due set expire with the state they describe (refreshed by every apply).
redis.call('PEXPIRE', KEYS[1], ttl)
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
`;

export interface Checkpoint {
  /** Last changelog offset applied; -1 when the task has state in Redis but none from the changelog yet. */
  changelog: number;
  streamTime: number;
  offset: string;
}

export interface ReadResult {
  /** `undefined` when Redis has no checkpoint for the task (never written, or lost). */
  checkpoint: Checkpoint | undefined;
  entries: Map<string, StateEntry>;
  /** How much state the task holds: keys and value bytes (from the checkpoint), and windows waiting to close. */
  size: StateSize;
}

export interface StateSize {
  keys: number;
  bytes: number;
  windowsOpen: number;
}

export type StateMetrics = Pick<Metrics, 'stateOperationDuration' | 'stateOperationErrors'>;

export interface StateChange {
  key: string;
  entry: StateEntry | null;
}

export class RedisTaskStore {
  readonly prefix: string;
  private readonly ckptKey: string;
  private readonly dueKey: string;

  constructor(
    private readonly redis: Redis,
    groupId: string,
    readonly partition: number,
    private readonly ttlMs: number,
    private readonly metrics?: StateMetrics,
  ) {
    this.prefix = `as:{${groupId}:${partition}}`;
    this.ckptKey = `${this.prefix}:ckpt`;
    this.dueKey = `${this.prefix}:due`;
  }

  /** One round trip: the checkpoint, the given keys, and every windowed key due to close by `closeUpTo`. */
  async read(keys: string[], closeUpTo?: number): Promise<ReadResult> {
    const closeArg = closeUpTo === undefined || !Number.isFinite(closeUpTo) ? '' : String(closeUpTo);
    const [ckptRaw, values, due, windowsOpen] = (await this.timed('read', () =>
      this.redis.eval(READ, 2, this.ckptKey, this.dueKey, this.prefix, closeArg, ...keys),
    )) as [string[], Array<string | null>, Array<string | null>, number];
    const entries = new Map<string, StateEntry>();
    keys.forEach((key, i) => {
      const raw = values[i];
      if (raw) entries.set(key, JSON.parse(raw) as StateEntry);
    });
    for (let i = 0; i < due.length; i += 2) {
      const raw = due[i + 1];
      if (raw) entries.set(due[i]!, JSON.parse(raw) as StateEntry);
    }
    let checkpoint: Checkpoint | undefined;
    const fields: Record<string, string> = {};
    if (ckptRaw.length > 0) {
      for (let i = 0; i < ckptRaw.length; i += 2) fields[ckptRaw[i]!] = ckptRaw[i + 1]!;
      checkpoint = {
        changelog: Number(fields.changelog ?? -1),
        streamTime: Number(fields.streamTime ?? Number.NEGATIVE_INFINITY),
        offset: fields.offset ?? '0',
      };
    }
    return {
      checkpoint,
      entries,
      size: { keys: Number(fields.keys ?? 0), bytes: Number(fields.bytes ?? 0), windowsOpen: Number(windowsOpen ?? 0) },
    };
  }

  /**
   * Applies changes recorded at `changelogOffset`. `applied`: done; `fenced`: Redis already had them;
   * `lost`: Redis is not at `expectedPrevious` (it lost state since the batch read it) and must be rebuilt from
   * the changelog. Replays pass no `expectedPrevious`: they are fenced by offset alone.
   */
  async apply(
    changes: StateChange[],
    changelogOffset: number,
    streamTime: number,
    inputOffset: string,
    expectedPrevious?: number,
  ): Promise<'applied' | 'fenced' | 'lost'> {
    const args: string[] = [];
    for (const { key, entry } of changes)
      args.push(key, entry === null ? '' : JSON.stringify(entry), entry?.c == null ? '' : String(entry.c));
    const applied = (await this.timed('apply', () =>
      this.redis.eval(
        APPLY,
        2,
        this.ckptKey,
        this.dueKey,
        this.prefix,
        String(changelogOffset),
        String(Number.isFinite(streamTime) ? streamTime : -1),
        inputOffset,
        String(this.ttlMs),
        expectedPrevious === undefined ? '' : String(expectedPrevious),
        ...args,
      ),
    )) as number;
    return applied === 1 ? 'applied' : applied === 0 ? 'fenced' : 'lost';
  }

  private async timed<T>(operation: string, work: () => Promise<T>): Promise<T> {
    if (!this.metrics) return work();
    const started = performance.now();
    try {
      return await work();
    } catch (error) {
      this.metrics.stateOperationErrors.inc({ operation });
      throw error;
    } finally {
      this.metrics.stateOperationDuration.observe({ operation }, (performance.now() - started) / 1000);
    }
  }
}
