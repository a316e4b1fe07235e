import type { Redis } from 'ioredis';
import type { DurationSample } from '../../core/eta.js';

/*
 * GPU box leases, shared by every worker process through Redis. A box runs one job at a time; a
 * job may send a box a request only while it holds the box's lease.
 *
 * Keys (P = QUEUE_PREFIX):
 *   P:box:<id>:lease    "<fence>|<jobId>|<since ms>", PX lease time; renewed while the job runs
 *   P:box:<id>:fence    INCR counter: each grant gets a larger fencing token
 *   P:box:<id>:circuit  JSON {at, reason}: the box is taken for broken; no lease is granted on it
 *   P:box:<id>:handover "<fence>|<ms>": the lease with that fence was released cleanly (its job's
 *                       box had answered) at that time; PX CLEAN_HANDOVER_MS
 *   P:boxes:line        ZSET of jobs waiting for a box: score = BullMQ priority, member =
 *                       "<arrival ms, 15 digits>|<jobId>", so the line is priority then arrival
 *   P:boxes:waiters     HASH jobId -> "<expiry ms>|<box ids>": a waiter not renewed in time
 *                       (its worker died) is dropped from the line by the next acquire
 *   P:boxes:runs        LIST of recent run times on boxes, newest first (the expected wait)
 *   channel P:boxes:wake   "<box> <jobId>" when that job is now next for the box: a lease on it
 *                       was released, or the waiter whose turn on it was (the box free) left the
 *                       line; "<box>" when a circuit changes (everyone looks again)
 *
 * Times come from Redis (TIME), so workers' clocks do not matter.
 */

const ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local jobId, member, prio = ARGV[1], ARGV[2], tonumber(ARGV[3])
local waiterMs, leaseMs, pfx = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local boxes, mine, free, busy = {}, {}, {}, {}
local usable = 0
for i = 7, #ARGV do
  local b = ARGV[i]
  boxes[#boxes + 1] = b
  mine[b] = true
  if redis.call('EXISTS', pfx .. b .. ':circuit') == 0 then
    usable = usable + 1
    local lease = redis.call('GET', pfx .. b .. ':lease')
    if lease then
      local since = tonumber(string.match(lease, '|(%d+)$')) or now
      busy[#busy + 1] = tostring(math.max(0, now - since))
    else
      free[b] = true
    end
  end
end
if usable == 0 then
  redis.call('ZREM', KEYS[1], member)
  redis.call('HDEL', KEYS[2], jobId)
  return {'closed'}
end
redis.call('ZADD', KEYS[1], 'NX', prio, member)
redis.call('HSET', KEYS[2], jobId, (now + waiterMs) .. '|' .. table.concat(boxes, ','))
local ahead = 0
local claimed = {}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local id = string.sub(m, 17)
  if id == jobId then break end
  local w = redis.call('HGET', KEYS[2], id)
  local exp = w and tonumber(string.match(w, '^(%d+)|'))
  if not exp or exp < now then
    redis.call('ZREM', KEYS[1], m)
    redis.call('HDEL', KEYS[2], id)
  else
    local shares, got = false, false
    for b in string.gmatch(string.match(w, '|(.*)$'), '[^,]+') do
      if mine[b] then
        shares = true
        if not got and free[b] and not claimed[b] then
          claimed[b] = true
          got = true
        end
      end
    end
    if shares then ahead = ahead + 1 end
  end
end
for _, b in ipairs(boxes) do
  if free[b] and not claimed[b] then
    -- A clean handover counts only if the lease it ended was the box's last one (no holder since).
    local handover = -1
    local h = redis.call('GET', pfx .. b .. ':handover')
    if h then
      local hf, hat = string.match(h, '^(%d+)|(%d+)$')
      if hf and hf == redis.call('GET', pfx .. b .. ':fence') then handover = math.max(0, now - tonumber(hat)) end
    end
    local fence = redis.call('INCR', pfx .. b .. ':fence')
    redis.call('SET', pfx .. b .. ':lease', fence .. '|' .. jobId .. '|' .. now, 'PX', leaseMs)
    redis.call('ZREM', KEYS[1], member)
    redis.call('HDEL', KEYS[2], jobId)
    return {'granted', b, tostring(fence), tostring(handover)}
  end
end
local out = {'waiting', tostring(ahead), tostring(usable)}
for _, x in ipairs(busy) do out[#out + 1] = x end
return out
`;

/** Compare-and-extend: true while the lease still carries our fencing token. */
const RENEW = `
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #ARGV[1] + 1) == ARGV[1] .. '|' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`;

/**
 * Records the job's run time on the box (when it made images; in the same round trip), then
 * compare-and-delete; a clean release stamps the handover. Then wakes the job next in line for
 * this box (the first live waiter that can use it; "<box> <jobId>"), or everyone when nobody is
 * known to want it. Only that job can take the box, so the others sleep on instead of all asking
 * at once.
 */
const RELEASE = `
if ARGV[5] ~= '' then
  redis.call('LPUSH', KEYS[5], ARGV[5])
  redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[6]) - 1)
end
local v = redis.call('GET', KEYS[1])
if not (v and string.sub(v, 1, #ARGV[1] + 1) == ARGV[1] .. '|') then return 0 end
redis.call('DEL', KEYS[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(ARGV[4]) > 0 then redis.call('SET', KEYS[4], ARGV[1] .. '|' .. now, 'PX', ARGV[4]) end
local box = ARGV[3]
for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local id = string.sub(m, 17)
  local w = redis.call('HGET', KEYS[3], id)
  local exp = w and tonumber(string.match(w, '^(%d+)|'))
  if exp and exp >= now then
    for b in string.gmatch(string.match(w, '|(.*)$'), '[^,]+') do
      if b == box then
        redis.call('PUBLISH', ARGV[2], box .. ' ' .. id)
        return 1
      end
    end
  end
end
redis.call('PUBLISH', ARGV[2], box)
return 1
`;

/**
 * Takes the job out of the line. For each of its boxes that is free (no lease, no circuit) and for
 * which it was next (no live waiter ahead of it wants the box), the job now next for the box is
 * woken by name ("<box> <jobId>"), as a release would have woken it: otherwise that job sleeps until
 * its poll on a free box. A leave with no free box changes nobody's turn (the next release wakes the
 * line), so it wakes nobody and does not look at the line; it never wakes everyone, since leaves
 * are frequent under load (overflow).
 */
const LEAVE = `
local jobId, member, channel, pfx = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local mine = redis.call('HGET', KEYS[2], jobId)
local inLine = redis.call('ZSCORE', KEYS[1], member)
local function gone(woken)
  redis.call('ZREM', KEYS[1], member)
  redis.call('HDEL', KEYS[2], jobId)
  return woken
end
if not (mine and inLine) then return gone(0) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- Past its expiry it already counted for nobody (the next acquire would have dropped it).
local exp = tonumber(string.match(mine, '^(%d+)|'))
if not exp or exp < now then return gone(0) end
local open, left = {}, 0
for b in string.gmatch(string.match(mine, '|(.*)$'), '[^,]+') do
  if not open[b] and redis.call('EXISTS', pfx .. b .. ':circuit') == 0 and redis.call('EXISTS', pfx .. b .. ':lease') == 0 then
    open[b] = true
    left = left + 1
  end
end
if left == 0 then return gone(0) end
-- The first live waiter that wants an open box is next for it: ahead of the leaver, it already was.
local behind, woken = false, 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if m == member then
    behind = true
  else
    local id = string.sub(m, 17)
    local w = redis.call('HGET', KEYS[2], id)
    local e = w and tonumber(string.match(w, '^(%d+)|'))
    if e and e >= now then
      local named = false
      for b in string.gmatch(string.match(w, '|(.*)$'), '[^,]+') do
        if open[b] then
          open[b] = nil
          left = left - 1
          if behind and not named then
            redis.call('PUBLISH', channel, b .. ' ' .. id)
            named = true
            woken = woken + 1
          end
        end
      end
      if left == 0 then break end
    end
  end
end
return gone(woken)
`;

/** What a waiting job learns on each try. */
export type AcquireResult =
  | {
      kind: 'granted';
      box: string;
      fence: number;
      /** ms since the box's previous lease was released cleanly, when that lease was its last one (none since). */
      handoverMs?: number;
    }
  | {
      kind: 'waiting';
      /** Waiters ahead of this job that can use one of its boxes. */
      ahead: number;
      /** Its boxes whose circuit is closed. */
      usable: number;
      /** How long each busy box has been running its job. */
      busyElapsedMs: number[];
    }
  /** Every one of its boxes has an open circuit: nothing to wait for. */
  | { kind: 'closed' };

/** A job's place in the boxes' line: BullMQ's priority, then when it was queued. */
export interface Waiter {
  jobId: string;
  priority: number;
  /** BullMQ's job timestamp (ms). */
  arrivedAt: number;
  /** Box ids it may run on, in the order it prefers them. */
  boxes: readonly string[];
}

/** A shared circuit: the box is taken for broken, by whichever worker saw it first. */
export interface SharedCircuit {
  at: number;
  reason: string;
}

type Scripted = Redis & {
  boxAcquire(...args: (string | number)[]): Promise<string[]>;
  boxRenew(key: string, fence: string, ms: number): Promise<number>;
  boxLeave(line: string, waiters: string, jobId: string, member: string, channel: string, boxPrefix: string): Promise<number>;
  boxRelease(
    key: string,
    line: string,
    waiters: string,
    handover: string,
    runs: string,
    fence: string,
    channel: string,
    box: string,
    handoverMs: number,
    run: string,
    runsKept: number,
  ): Promise<number>;
};

const RUNS_KEPT = 30;

/**
 * How long after a clean release (the job's box had answered, so nothing of ours runs there) the
 * next job may skip asking the box whether it is idle before sending its own. Short, because the
 * owner may start something in the web UI at any moment, and a crashed holder's lease never stamps
 * a handover at all; long enough for the next job in line to take the box (a few ms).
 */
export const CLEAN_HANDOVER_MS = 1000;

/** How a job let go of its box. */
export interface ReleaseOptions {
  /** The box answered the job's last request: nothing of ours runs there now. */
  clean?: boolean;
  /** The job made images there: its run time, for every worker's expected wait. */
  run?: { ms: number; count: number };
}

/** The Redis side of box leases; see the key list above. */
export class BoxLeases {
  private readonly redis: Scripted;
  readonly wakeChannel: string;
  private runsCache: { at: number; samples: DurationSample[] } | undefined;

  constructor(
    redis: Redis,
    private readonly prefix: string,
    readonly leaseMs: number,
  ) {
    if (!('boxAcquire' in redis)) {
      redis.defineCommand('boxAcquire', { numberOfKeys: 2, lua: ACQUIRE });
      redis.defineCommand('boxRenew', { numberOfKeys: 1, lua: RENEW });
      redis.defineCommand('boxRelease', { numberOfKeys: 5, lua: RELEASE });
      redis.defineCommand('boxLeave', { numberOfKeys: 2, lua: LEAVE });
    }
    this.redis = redis as Scripted;
    this.wakeChannel = `${prefix}:boxes:wake`;
  }

  private key(box: string, what: 'lease' | 'fence' | 'circuit' | 'handover'): string {
    return `${this.prefix}:box:${box}:${what}`;
  }

  private member(w: Pick<Waiter, 'jobId' | 'arrivedAt'>): string {
    return `${String(Math.max(0, Math.floor(w.arrivedAt))).padStart(15, '0')}|${w.jobId}`;
  }

  /**
   * Takes the first free box this job may use when no live waiter ahead of it wants that box;
   * otherwise puts (or keeps) it in the line and says where it stands. Each try renews the job's
   * place, so a waiter whose worker died leaves the line within `waiterMs`.
   */
  async tryAcquire(w: Waiter, waiterMs: number): Promise<AcquireResult> {
    const reply = await this.redis.boxAcquire(
      `${this.prefix}:boxes:line`,
      `${this.prefix}:boxes:waiters`,
      w.jobId,
      this.member(w),
      Math.max(0, Math.floor(w.priority)),
      waiterMs,
      this.leaseMs,
      `${this.prefix}:box:`,
      ...w.boxes,
    );
    switch (reply[0]) {
      case 'granted': {
        const handover = Number(reply[3] ?? -1);
        return { kind: 'granted', box: String(reply[1]), fence: Number(reply[2]), ...(handover >= 0 ? { handoverMs: handover } : {}) };
      }
      case 'closed':
        return { kind: 'closed' };
      default:
        return { kind: 'waiting', ahead: Number(reply[1]), usable: Number(reply[2]), busyElapsedMs: reply.slice(3).map(Number) };
    }
  }

  /**
   * Leaves the line (cancelled, sent to the cloud, or done waiting); in the same round trip, wakes
   * the job now next for a free box the leaver was next for (see LEAVE).
   */
  async leave(w: Pick<Waiter, 'jobId' | 'arrivedAt'>): Promise<void> {
    await this.redis.boxLeave(
      `${this.prefix}:boxes:line`,
      `${this.prefix}:boxes:waiters`,
      w.jobId,
      this.member(w),
      this.wakeChannel,
      `${this.prefix}:box:`,
    );
  }

  /** Extends the lease if it still carries `fence`; false once another job holds the box (or nobody does). */
  async renew(box: string, fence: number): Promise<boolean> {
    return (await this.redis.boxRenew(this.key(box, 'lease'), String(fence), this.leaseMs)) === 1;
  }

  /**
   * Frees the box if the lease is still ours, and wakes the line; in the same round trip, records
   * the job's run time on the box and (clean) stamps the handover. The run counts even when the
   * lease had already gone: the images were made.
   */
  async release(box: string, fence: number, o: ReleaseOptions = {}): Promise<void> {
    await this.redis.boxRelease(
      this.key(box, 'lease'),
      `${this.prefix}:boxes:line`,
      `${this.prefix}:boxes:waiters`,
      this.key(box, 'handover'),
      `${this.prefix}:boxes:runs`,
      String(fence),
      this.wakeChannel,
      box,
      o.clean ? CLEAN_HANDOVER_MS : 0,
      o.run ? JSON.stringify({ ms: Math.round(o.run.ms), count: o.run.count, box }) : '',
      RUNS_KEPT,
    );
    if (o.run) this.runsCache = undefined;
  }

  /** Takes the box for broken for every worker at once; waiters are woken and move on. */
  async openCircuit(box: string, reason: string): Promise<void> {
    const value: SharedCircuit = { at: Date.now(), reason: reason.slice(0, 300) };
    await this.redis.set(this.key(box, 'circuit'), JSON.stringify(value), 'EX', 86_400);
    await this.redis.publish(this.wakeChannel, box);
  }

  /** A health probe found the box well again. */
  async closeCircuit(box: string): Promise<void> {
    if ((await this.redis.del(this.key(box, 'circuit'))) > 0) await this.redis.publish(this.wakeChannel, box);
  }

  /** The shared circuits of these boxes that are open. */
  async openCircuits(boxes: readonly string[]): Promise<Map<string, SharedCircuit>> {
    const out = new Map<string, SharedCircuit>();
    if (boxes.length === 0) return out;
    const values = await this.redis.mget(...boxes.map((b) => this.key(b, 'circuit')));
    values.forEach((v, i) => {
      if (!v) return;
      try {
        const c = JSON.parse(v) as SharedCircuit;
        out.set(boxes[i]!, { at: Number(c.at) || 0, reason: String(c.reason ?? '') });
      } catch {
        out.set(boxes[i]!, { at: 0, reason: 'unreadable' });
      }
    });
    return out;
  }

  /** Recent run times on boxes, newest first (read at most once a second per process). */
  async recentRuns(): Promise<DurationSample[]> {
    const now = Date.now();
    if (this.runsCache && now - this.runsCache.at < 1000) return this.runsCache.samples;
    const raw = await this.redis.lrange(`${this.prefix}:boxes:runs`, 0, RUNS_KEPT - 1);
    const samples: DurationSample[] = [];
    for (const r of raw) {
      try {
        const s = JSON.parse(r) as { ms?: unknown; count?: unknown; box?: unknown };
        const ms = Number(s.ms);
        const count = Number(s.count);
        if (Number.isFinite(ms) && ms >= 0 && Number.isInteger(count) && count >= 1)
          samples.push({ ms, count, backend: String(s.box ?? '') });
      } catch {
        // A malformed entry says nothing.
      }
    }
    this.runsCache = { at: now, samples };
    return samples;
  }
}
