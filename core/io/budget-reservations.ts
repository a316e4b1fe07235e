import type { Redis } from 'ioredis';
import { budgetMonthExpiresAt, usdToMicros } from '../budget.js';

/*
 * One hash per guild and month, in integer micro-dollars: `limit` (the budget), `settled` (paid
 * attempts billed so far), `reserved` (the sum of open reservations) and one field per open
 * reservation, named by job and attempt. Every change is one script, so reservations from any
 * number of workers see each other: settled + reserved never passes the limit.
 */

/** Creates the hash if absent (limit, settled); else refreshes only its limit. */
const SEED = `
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'limit', ARGV[1], 'settled', ARGV[2], 'reserved', 0)
  redis.call('EXPIREAT', KEYS[1], ARGV[3])
  return 1
end
if ARGV[4] == '1' then redis.call('HSET', KEYS[1], 'limit', ARGV[1]) end
return 0`;

/**
 * Reserves up to ARGV[2] (at least ARGV[3]) under field ARGV[1]. Seeds the hash from ARGV[4..6]
 * when it is absent (lost, or the month just began). Replies {1, amount} reserved (the same field
 * again: what it holds), {0, 0} spent (the settled spend leaves no room for even the least), or
 * {-1, 0} held (other attempts' reservations fill the room; it may free up when they settle).
 */
const RESERVE = `
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'limit', ARGV[4], 'settled', ARGV[5], 'reserved', 0)
  redis.call('EXPIREAT', KEYS[1], ARGV[6])
end
local have = redis.call('HGET', KEYS[1], 'r:' .. ARGV[1])
if have then return {1, tonumber(have)} end
local limit = tonumber(redis.call('HGET', KEYS[1], 'limit') or '0')
local settled = tonumber(redis.call('HGET', KEYS[1], 'settled') or '0')
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')
local want = tonumber(ARGV[2])
local least = tonumber(ARGV[3])
if settled + least > limit then return {0, 0} end
local room = limit - settled - reserved
local take
if room >= want then take = want elseif room >= least then take = room else return {-1, 0} end
redis.call('HSET', KEYS[1], 'r:' .. ARGV[1], take)
redis.call('HINCRBY', KEYS[1], 'reserved', take)
return {1, take}`;

/** Moves reservation ARGV[1] to settled at the billed ARGV[2]; without the reservation (the hash was re-seeded) only adds the bill. */
const SETTLE = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local have = redis.call('HGET', KEYS[1], 'r:' .. ARGV[1])
if have then
  redis.call('HDEL', KEYS[1], 'r:' .. ARGV[1])
  redis.call('HINCRBY', KEYS[1], 'reserved', -tonumber(have))
end
redis.call('HINCRBY', KEYS[1], 'settled', ARGV[2])
return 1`;

type Reply = [number, number];

interface BudgetCommands {
  budgetSeed(key: string, limit: number, settled: number, expireAt: number, refresh: '0' | '1'): Promise<number>;
  budgetReserve(
    key: string,
    field: string,
    want: number,
    least: number,
    seedLimit: number,
    seedSettled: number,
    expireAt: number,
  ): Promise<Reply>;
  budgetSettle(key: string, field: string, billed: number): Promise<number>;
}

/** What the month's budget holds, in dollars. */
export interface BudgetState {
  limitUsd: number;
  settledUsd: number;
  reservedUsd: number;
  open: number;
}

export type ReserveAnswer = { kind: 'reserved'; usd: number } | { kind: 'spent' } | { kind: 'held' };

/** How long an admission trusts this process's own seed of a guild's month (same limit) instead of sending another. */
const ADMISSION_SEED_FRESH_MS = 10_000;
/** Most guilds whose last seed is remembered (the oldest go first). */
const SEEDED_MAX_GUILDS = 1000;

/** The month's budget: seeded by the bot, reserved and settled by the worker (one EVALSHA each). */
export class BudgetReservations {
  private readonly r: Redis & BudgetCommands;
  /** The seeds this process sent, by guild: a burst of one guild's jobs costs one script, not one per job. */
  private readonly seeded = new Map<string, { month: string; limitMicros: number; at: number; done: Promise<void> }>();

  constructor(
    redis: Redis,
    private readonly prefix: string,
  ) {
    redis.defineCommand('budgetSeed', { numberOfKeys: 1, lua: SEED });
    redis.defineCommand('budgetReserve', { numberOfKeys: 1, lua: RESERVE });
    redis.defineCommand('budgetSettle', { numberOfKeys: 1, lua: SETTLE });
    this.r = redis as Redis & BudgetCommands;
  }

  key(guildId: string, month: string): string {
    return `${this.prefix}:budget:${guildId}:${month}`;
  }

  /** At admission, and when a moderator changes the budget: creates the month's hash from Postgres's figures if it is absent, else refreshes its limit. */
  async seed(guildId: string, month: string, limitUsd: number, settledUsd: number): Promise<void> {
    await this.r.budgetSeed(this.key(guildId, month), usdToMicros(limitUsd), usdToMicros(settledUsd), budgetMonthExpiresAt(month), '1');
  }

  /**
   * At admission: seed() unless this process seeded the same month with the same limit less than
   * ADMISSION_SEED_FRESH_MS ago. Skipping loses nothing: a moderator's change arrives as a new limit
   * (or through seed() where it was made), and a hash lost meanwhile is seeded again by the worker's
   * reservation from the job's own figures.
   */
  seedForAdmission(guildId: string, month: string, limitUsd: number, settledUsd: number, now = Date.now()): Promise<void> {
    const limitMicros = usdToMicros(limitUsd);
    const last = this.seeded.get(guildId);
    if (last && last.month === month && last.limitMicros === limitMicros && now - last.at < ADMISSION_SEED_FRESH_MS) return last.done;
    const done = this.seed(guildId, month, limitUsd, settledUsd);
    this.seeded.delete(guildId);
    this.seeded.set(guildId, { month, limitMicros, at: now, done });
    if (this.seeded.size > SEEDED_MAX_GUILDS) this.seeded.delete(this.seeded.keys().next().value!);
    // A seed that failed is not trusted: the next admission sends it again.
    done.catch(() => {
      if (this.seeded.get(guildId)?.done === done) this.seeded.delete(guildId);
    });
    return done;
  }

  /**
   * Sets aside up to `wantUsd` (at least `leastUsd`) for one attempt, named `field`. `seed` is the
   * admission's view of the month, used only if the hash is gone.
   */
  async reserve(
    guildId: string,
    month: string,
    field: string,
    o: { wantUsd: number; leastUsd: number; seed: { limitUsd: number; settledUsd: number } },
  ): Promise<ReserveAnswer> {
    const [status, micros] = await this.r.budgetReserve(
      this.key(guildId, month),
      field,
      usdToMicros(o.wantUsd),
      usdToMicros(o.leastUsd),
      usdToMicros(o.seed.limitUsd),
      usdToMicros(o.seed.settledUsd),
      budgetMonthExpiresAt(month),
    );
    if (status === 1) return { kind: 'reserved', usd: micros / 1e6 };
    return status === 0 ? { kind: 'spent' } : { kind: 'held' };
  }

  /** The attempt is over: its reservation becomes what the provider billed (0 when nothing was). */
  async settle(guildId: string, month: string, field: string, billedUsd: number): Promise<void> {
    await this.r.budgetSettle(this.key(guildId, month), field, usdToMicros(billedUsd));
  }

  async read(guildId: string, month: string): Promise<BudgetState | null> {
    const h = await this.r.hgetall(this.key(guildId, month));
    if (!h.limit) return null;
    return {
      limitUsd: Number(h.limit) / 1e6,
      settledUsd: Number(h.settled ?? 0) / 1e6,
      reservedUsd: Number(h.reserved ?? 0) / 1e6,
      open: Object.keys(h).filter((k) => k.startsWith('r:')).length,
    };
  }
}
