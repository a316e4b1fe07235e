import { createHash, randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { guildSpace } from '../config.js';

/*
 * Linking a guild's own GPU box. The box's worker and the bot share nothing but Redis, so the
 * exchange happens there: the join token is the password of a one-time Redis user that can only
 * push a request to, and read the answer from, `<prefix>:join:<linkId>:*`. The answer holds the
 * credentials of the link's own Redis user, whose keys and channels are the guild's key space alone.
 */

/** A guild's key space: its queue, results, leases and status reports live under it. */
export const guildPrefix = guildSpace;

/** Redis users are global to the server: their names carry the deployment's prefix (default `imagebot`). */
export const linkUserName = (prefix: string, linkId: string) => `${prefix}-link-${linkId}`;
export const joinUserName = (prefix: string, linkId: string) => `${prefix}-join-${linkId}`;

export const joinKeys = (prefix: string, linkId: string) => ({
  pattern: `${prefix}:join:${linkId}:*`,
  request: `${prefix}:join:${linkId}:request`,
  answer: `${prefix}:join:${linkId}:answer`,
});

const TOKEN_PREFIX = 'ibj1';
const LINK_ID = /^[a-z0-9]{16}$/;

export const newLinkId = () => randomBytes(10).toString('hex').slice(0, 16);

/** A fresh join token for a link: it names the link, and its secret is the join user's password. */
export const newJoinToken = (linkId: string) => `${TOKEN_PREFIX}.${linkId}.${randomBytes(24).toString('base64url')}`;

/** The link a join token names, or undefined when it is not one of ours (a typo, a truncated paste). */
export function parseJoinToken(token: string): { linkId: string } | undefined {
  const [tag, linkId, secret] = token.trim().split('.');
  if (tag !== TOKEN_PREFIX || !linkId || !LINK_ID.test(linkId) || !secret || secret.length < 16) return undefined;
  return { linkId };
}

/** sha256 hex: what Postgres keeps of a token, and what Redis is given as the join user's password (`#<hash>`). */
export const tokenHash = (token: string) => createHash('sha256').update(token.trim()).digest('hex');

/**
 * Every command a guild worker sends: the ones inside BullMQ 6.7.6's Lua scripts (Redis checks
 * those too; `rcall("…")` in bullmq/dist/cjs/commands), BullMQ's and ioredis's own (INFO for the
 * version check, CLIENT SETNAME, BZPOPMIN, EVALSHA falling back to EVAL), and ours (results, box
 * leases, status reports, cancel flags and channel). Proven by tests/worker/link-acl.test.ts.
 * No admin, no KEYS/SCAN, no FLUSH, no CONFIG, no ACL: the key and channel patterns do the rest.
 */
const LINK_COMMANDS = [
  ...['ping', 'info', 'client|setname', 'evalsha', 'eval', 'multi', 'exec', 'subscribe', 'unsubscribe', 'publish', 'bzpopmin'],
  ...['get', 'set', 'mget', 'del', 'unlink', 'exists', 'type', 'rename', 'expire', 'pexpire', 'pexpireat', 'persist', 'pttl'],
  ...['incr', 'incrby', 'time'],
  ...['hget', 'hset', 'hmset', 'hmget', 'hdel', 'hgetall', 'hincrby', 'hexists', 'hlen'],
  ...['lpush', 'rpush', 'lpop', 'rpop', 'lrange', 'lrem', 'llen', 'ltrim', 'lindex', 'lset', 'lpos', 'rpoplpush'],
  ...['zadd', 'zrem', 'zcard', 'zscore', 'zcount', 'zrange', 'zrangebyscore', 'zrevrange', 'zrevrangebyscore', 'zrangebylex'],
  ...['zlexcount', 'zremrangebyscore', 'zremrangebyrank', 'zpopmin'],
  ...['sadd', 'srem', 'smembers', 'sismember', 'scard'],
  ...['xadd', 'xtrim', 'xlen', 'xrange', 'xread', 'xdel'],
] as const;

/** ACL SETUSER arguments for a link's user: only the guild's keys and channels, only the worker's commands. */
function linkUserRules(prefix: string, guildId: string, passwordHash: string): string[] {
  const space = guildPrefix(prefix, guildId);
  return ['reset', 'on', `#${passwordHash}`, `~${space}:*`, `&${space}:*`, '-@all', ...LINK_COMMANDS.map((c) => `+${c}`)];
}

/** ACL SETUSER arguments for a link's one-time join user: push a request, wait for the answer, nothing else. */
function joinUserRules(prefix: string, linkId: string, token: string): string[] {
  return [
    'reset',
    'on',
    `#${tokenHash(token)}`,
    `~${joinKeys(prefix, linkId).pattern}`,
    'resetchannels',
    '-@all',
    '+rpush',
    '+blpop',
    '+ping',
  ];
}

/** The bot's answer to a join request, read by the box's worker. */
export const joinAnswerSchema = z.discriminatedUnion('ok', [
  z.object({ ok: z.literal(true), guildId: z.string().regex(/^\d{17,20}$/), username: z.string().min(1), password: z.string().min(16) }),
  z.object({ ok: z.literal(false), error: z.string() }),
]);

/** What a worker pushes to ask for its credentials (informational: the bot trusts only the token). */
export const joinRequestSchema = z.object({ host: z.string().max(200), at: z.number() });

/** Creates (or replaces) the one-time join user for a link's token. */
export async function createJoinUser(redis: Redis, prefix: string, linkId: string, token: string): Promise<void> {
  await redis.call('ACL', 'SETUSER', joinUserName(prefix, linkId), ...joinUserRules(prefix, linkId, token));
}

/** Creates (or replaces, cutting off whoever held the old password) a link's own user; returns its fresh password. */
export async function createLinkUser(redis: Redis, prefix: string, guildId: string, linkId: string): Promise<string> {
  const password = randomBytes(32).toString('base64url');
  const name = linkUserName(prefix, linkId);
  // SETUSER on an existing user keeps its open connections; DELUSER first closes them.
  await redis.call('ACL', 'DELUSER', name);
  await redis.call('ACL', 'SETUSER', name, ...linkUserRules(prefix, guildId, tokenHash(password)));
  return password;
}

/** Deletes Redis users; Redis closes their connections at once. Returns how many existed. */
export async function deleteUsers(redis: Redis, names: readonly string[]): Promise<number> {
  if (names.length === 0) return 0;
  return Number(await redis.call('ACL', 'DELUSER', ...names));
}

/** A linked box's own tally, in its guild's key space (the link's worker may write it): jobs per UTC day, last model. */
const linkStatsKey = (space: string, linkId: string) => `${space}:link:${linkId}:stats`;
const day = (at: number) => new Date(at).toISOString().slice(0, 10);

export async function recordLinkJob(redis: Redis, space: string, linkId: string, model: string | undefined, at: number): Promise<void> {
  const key = linkStatsKey(space, linkId);
  // The key outlives 7 days only while jobs come less than 7 days apart, so the first job on or after
  // a day's 7th anniversary falls within the 7 days after it: dropping those 7 days' fields drops it.
  const stale = Array.from({ length: 7 }, (_, i) => `jobs:${day(at - (7 + i) * 86_400_000)}`);
  const tx = redis
    .multi()
    .hincrby(key, `jobs:${day(at)}`, 1)
    .hdel(key, ...stale)
    .hset(key, 'lastJobAt', String(at));
  if (model) tx.hset(key, 'model', model);
  await tx.expire(key, 7 * 86_400).exec();
}

export async function readLinkStats(
  redis: Redis,
  space: string,
  linkId: string,
  at: number,
): Promise<{ jobsToday: number; model?: string; lastJobAt?: number }> {
  const h = await redis.hgetall(linkStatsKey(space, linkId));
  return {
    jobsToday: Number(h[`jobs:${day(at)}`] ?? 0),
    ...(h.model ? { model: h.model } : {}),
    ...(h.lastJobAt ? { lastJobAt: Number(h.lastJobAt) } : {}),
  };
}
