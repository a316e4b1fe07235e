import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

/**
 * A guild's turn on the shared queue: how many of its jobs wait there now (core/quota.ts
 * sharedQueuePriority turns it into a priority). Each guild has a sorted set of the job ids it put
 * on the shared queue, scored by when; one script counts those still waiting (in BullMQ's
 * prioritized set, or added in the last few seconds and maybe not there yet), drops the others and
 * adds the new job, atomically, so two bot processes admitting at once get different turns. No
 * counter to decrement: a job that started, was cancelled or vanished simply stops counting.
 */
const SCRIPT = `
local grace = tonumber(ARGV[2]) - tonumber(ARGV[3])
local ids = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local n = 0
for i = 1, #ids, 2 do
  local id = ids[i]
  if id ~= ARGV[1] then
    if redis.call('ZSCORE', KEYS[2], id) or tonumber(ids[i + 1]) > grace then
      n = n + 1
    else
      redis.call('ZREM', KEYS[1], id)
    end
  end
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], 604800000)
return n
`;
const SHA = createHash('sha1').update(SCRIPT).digest('hex');
/** A job just ranked may take this long to reach the prioritized set; it counts meanwhile. */
const ENQUEUE_GRACE_MS = 10_000;

const sharedTurnsKey = (prefix: string, guildId: string) => `${prefix}:fair:${guildId}`;

/** The guild's jobs waiting on the shared queue before this one (0 = its first); records this one. */
export async function takeSharedTurn(
  redis: Redis,
  o: { prefix: string; prioritizedKey: string; guildId: string; jobId: string; now: number },
): Promise<number> {
  const keys = [sharedTurnsKey(o.prefix, o.guildId), o.prioritizedKey];
  const args = [o.jobId, String(o.now), String(ENQUEUE_GRACE_MS)];
  try {
    return Number(await redis.evalsha(SHA, keys.length, ...keys, ...args));
  } catch (err) {
    if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
    return Number(await redis.eval(SCRIPT, keys.length, ...keys, ...args));
  }
}
