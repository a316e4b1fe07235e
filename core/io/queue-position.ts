import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { type BackendStatus, backendStatusKey, parseBackendStatuses } from './backend-status.js';

/** The BullMQ keys the position script reads (from `queue.keys`, so the prefix and names match BullMQ's). */
export interface PositionKeys {
  wait: string;
  prioritized: string;
  active: string;
  delayed: string;
}

/** Where one job stands: waiting with `ahead` jobs to start before it, delayed (a retry's backoff), or neither. */
export type JobPlace = { state: 'waiting'; ahead: number } | { state: 'delayed' } | { state: 'other' };

export interface QueueSnapshot {
  places: Map<string, JobPlace>;
  /** Jobs running now (BullMQ's active list). */
  active: number;
  /** Jobs waiting to start (wait list plus prioritized set). */
  waiting: number;
  /** Every worker's latest backend reports, read in the same round trip (for slots and durations). */
  statuses: BackendStatus[];
  /** Jobs workers have taken that wait in the GPU boxes' line (worker/boxes/leases.ts): ahead of every queued job. */
  boxLine?: number;
}

/*
 * BullMQ 6's order (moveToActive / fetchNextJob): the wait list first, popped from its right end
 * (FIFO jobs are LPUSHed, LIFO ones RPUSHed), then the prioritized set by ascending score, where
 * score = priority * 2^32 + a per-queue counter (FIFO within one priority; a stalled job is put
 * back with counter 0, ahead of its peers). So a prioritized job has LLEN(wait) + ZRANK jobs ahead
 * and a wait-list job has as many as stand to its right. One script answers for every id, in one
 * round trip and one consistent snapshot; the wait list is read whole only if an id is not in the
 * prioritized set (all our jobs carry a priority, so it is normally empty).
 */
const SCRIPT = `
local waitLen = redis.call('LLEN', KEYS[1])
local prioLen = redis.call('ZCARD', KEYS[2])
local out = { redis.call('LLEN', KEYS[3]), waitLen + prioLen }
local waitIndex = nil
for i = 1, #ARGV do
  local id = ARGV[i]
  local rank = redis.call('ZRANK', KEYS[2], id)
  if rank then
    out[#out + 1] = waitLen + rank
  else
    if waitIndex == nil then
      waitIndex = {}
      if waitLen > 0 then
        local ids = redis.call('LRANGE', KEYS[1], 0, -1)
        for j = 1, #ids do waitIndex[ids[j]] = j end
      end
    end
    local j = waitIndex[id]
    if j then
      out[#out + 1] = waitLen - j
    elseif redis.call('ZSCORE', KEYS[4], id) then
      out[#out + 1] = -2
    else
      out[#out + 1] = -1
    end
  end
end
out[#out + 1] = redis.call('HVALS', KEYS[5])
out[#out + 1] = redis.call('ZCARD', KEYS[6])
return out
`;
const SHA = createHash('sha1').update(SCRIPT).digest('hex');

/** Reads queue positions of many jobs at once; one EVALSHA per call (EVAL once after a Redis restart). */
export class QueuePositions {
  constructor(
    private readonly redis: Redis,
    private readonly keys: PositionKeys,
    /** QUEUE_PREFIX, for the backend status hash workers publish to. */
    private readonly prefix: string,
  ) {}

  async read(jobIds: readonly string[]): Promise<QueueSnapshot> {
    const keys = [
      this.keys.wait,
      this.keys.prioritized,
      this.keys.active,
      this.keys.delayed,
      backendStatusKey(this.prefix),
      `${this.prefix}:boxes:line`,
    ];
    let raw: unknown;
    try {
      raw = await this.redis.evalsha(SHA, keys.length, ...keys, ...jobIds);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      raw = await this.redis.eval(SCRIPT, keys.length, ...keys, ...jobIds);
    }
    return parseReply(raw, jobIds);
  }
}

function parseReply(raw: unknown, jobIds: readonly string[]): QueueSnapshot {
  if (!Array.isArray(raw) || raw.length !== jobIds.length + 4) throw new Error('unexpected reply from the queue position script');
  const places = new Map<string, JobPlace>();
  jobIds.forEach((id, i) => {
    const n = Number(raw[i + 2]);
    places.set(id, n >= 0 ? { state: 'waiting', ahead: n } : n === -2 ? { state: 'delayed' } : { state: 'other' });
  });
  const statusValues = raw[jobIds.length + 2];
  return {
    places,
    active: Number(raw[0]),
    waiting: Number(raw[1]),
    statuses: parseBackendStatuses(Array.isArray(statusValues) ? statusValues.map(String) : []),
    boxLine: Number(raw[jobIds.length + 3]) || 0,
  };
}
