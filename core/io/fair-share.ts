import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { MEMBER_SPAN } from '../quota.js';

/**
 * A guild's turn on the shared queue (core/quota.ts sharedQueuePriority): how many of its jobs
 * waiting there go before the new one in the guild's own order, i.e. have a member part (priority
 * modulo MEMBER_SPAN) no larger than the new job's. Each guild has a sorted set of the job ids it put
 * on the shared queue; one script counts those still in BullMQ's prioritized set, drops the others
 * and adds the new job, atomically. No counter to decrement: a job that started, was cancelled or
 * vanished simply stops counting (a retry waiting out its backoff too, so it comes back behind the
 * jobs queued meanwhile, as on a single queue).
 */
const SCRIPT = `
local mine = tonumber(ARGV[3])
local span = tonumber(ARGV[4])
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local n = 0
for i = 1, #ids do
  local id = ids[i]
  if id ~= ARGV[1] then
    local score = redis.call('ZSCORE', KEYS[2], id)
    if score then
      local priority = math.floor(tonumber(score) / 4294967296)
      if priority % span <= mine then n = n + 1 end
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

const sharedTurnsKey = (prefix: string, guildId: string) => `${prefix}:fair:${guildId}`;

/**
 * The guild's jobs waiting on the shared queue that go before this one in its own order (0 = none);
 * records this one. Two jobs of one guild admitted at the same instant may get the same turn (the
 * first is not in the prioritized set yet): then they run in arrival order, still behind every
 * guild's earlier turns.
 */
export async function takeSharedTurn(
  redis: Redis,
  o: { prefix: string; prioritizedKey: string; guildId: string; jobId: string; now: number; memberPart: number },
): Promise<number> {
  const keys = [sharedTurnsKey(o.prefix, o.guildId), o.prioritizedKey];
  const args = [o.jobId, String(o.now), String(o.memberPart), String(MEMBER_SPAN)];
  try {
    return Number(await redis.evalsha(SHA, keys.length, ...keys, ...args));
  } catch (err) {
    if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
    return Number(await redis.eval(SCRIPT, keys.length, ...keys, ...args));
  }
}
