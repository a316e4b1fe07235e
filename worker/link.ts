import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import { Redis } from 'ioredis';
import { z } from 'zod';
import { BOX_FAMILIES } from '../core/backend-families.js';
import { ConfigError, type WorkerConfig } from '../core/config.js';
import { guildPrefix, joinAnswerSchema, joinKeys, joinUserName, parseJoinToken, tokenHash } from '../core/io/link.js';
import type { Logger } from '../core/io/logger.js';

/*
 * The box's side of linking (core/io/link.ts): trade the one-time join token for the link's own
 * Redis credentials, keep them in WORKER_CREDENTIALS_FILE, and start as the guild's worker.
 */

const credentialsSchema = z.object({
  v: z.literal(1),
  guildId: z.string().regex(/^\d{17,20}$/),
  redisUrl: z.url({ protocol: /^rediss?$/ }),
  linkId: z.string(),
  /** sha256 of the token that produced these credentials: a new token (after rotate) means join again. */
  tokenHash: z.string(),
});
type Credentials = z.infer<typeof credentialsSchema>;

const JOIN_TIMEOUT_S = 30;

const USED_OR_REVOKED =
  'WORKER_JOIN_TOKEN was already used or has been revoked: ask a moderator for a new one (/admin gpu rotate, or /admin gpu link)';

function readCredentials(file: string): Credentials | undefined {
  let raw: string;
  try {
    raw = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    json = undefined;
  }
  const parsed = credentialsSchema.safeParse(json);
  if (!parsed.success)
    throw new ConfigError([`WORKER_CREDENTIALS_FILE ${file} is not a link's credentials file: delete it and join again`]);
  return parsed.data;
}

function writeCredentials(file: string, c: Credentials): void {
  mkdirSync(dirname(file), { recursive: true });
  // 0600: the file holds a Redis password. Written aside then renamed, so a crash never leaves half of it.
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(c, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, file);
}

const withAuth = (redisUrl: string, username: string, password: string) => {
  const u = new URL(redisUrl);
  u.username = username;
  u.password = password;
  return u.toString();
};

/** Trades a join token for the link's credentials over Redis; throws a ConfigError saying what to do when it cannot. */
export async function joinWithToken(
  redisUrl: string,
  prefix: string,
  token: string,
  timeoutS = JOIN_TIMEOUT_S,
): Promise<{ guildId: string; redisUrl: string; linkId: string }> {
  const parsed = parseJoinToken(token);
  if (!parsed) throw new ConfigError(['WORKER_JOIN_TOKEN is not a join token from /admin gpu link (copy it whole)']);
  const keys = joinKeys(prefix, parsed.linkId);
  // The join user may run nothing but RPUSH/BLPOP/PING: no ready check (INFO), no reconnection,
  // and an explicit AUTH, so a refused token is an error here rather than a background event.
  const redis = new Redis(redisUrl, {
    lazyConnect: true,
    enableReadyCheck: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 10_000,
    disableClientInfo: true,
  });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    try {
      await redis.call('AUTH', joinUserName(prefix, parsed.linkId), token.trim());
    } catch (err) {
      if (/WRONGPASS|invalid username-password/i.test(String(err))) throw new ConfigError([USED_OR_REVOKED]);
      throw err;
    }
    await redis.rpush(keys.request, JSON.stringify({ host: hostname().slice(0, 200), at: Date.now() }));
    const popped = await redis.blpop(keys.answer, timeoutS);
    if (!popped) throw new ConfigError([`no answer to the join request within ${timeoutS} s: is the bot running with LINK_REDIS_URL set?`]);
    const answer = joinAnswerSchema.parse(JSON.parse(popped[1]));
    if (!answer.ok) throw new ConfigError([`WORKER_JOIN_TOKEN refused: ${answer.error}`]);
    return { guildId: answer.guildId, redisUrl: withAuth(redisUrl, answer.username, answer.password), linkId: parsed.linkId };
  } finally {
    redis.disconnect();
  }
}

/**
 * The worker's configuration once linking is resolved: the stored credentials when they exist (and
 * were not made by another token than WORKER_JOIN_TOKEN), else the result of trading the token,
 * else the configuration as given (an operator's worker).
 */
export async function resolveLink(config: WorkerConfig, log: Logger): Promise<{ config: WorkerConfig; link?: { id: string } }> {
  const file = config.WORKER_CREDENTIALS_FILE;
  const token = config.WORKER_JOIN_TOKEN;
  let creds = readCredentials(file);
  if (token && creds?.tokenHash !== tokenHash(token)) {
    const joined = await joinWithToken(config.REDIS_URL, config.QUEUE_PREFIX, token);
    creds = { v: 1, ...joined, tokenHash: tokenHash(token) };
    writeCredentials(file, creds);
    log.info({ guildId: creds.guildId, linkId: creds.linkId, file }, 'joined: this box is linked to its server; credentials stored');
  } else if (creds) {
    log.info({ guildId: creds.guildId, linkId: creds.linkId, file }, 'linked box: using stored credentials');
  }
  if (!creds) return { config };
  return { config: { ...config, REDIS_URL: creds.redisUrl, WORKER_GUILD_ID: creds.guildId }, link: { id: creds.linkId } };
}

/**
 * A guild's worker (WORKER_GUILD_ID) works in the guild's key space with its GPU boxes alone: the
 * cloud is the operator's to pay for and never runs on a guild's box worker.
 */
export function guildScoped(config: WorkerConfig): WorkerConfig {
  if (!config.WORKER_GUILD_ID) return config;
  const boxes = config.BACKENDS.filter((b) => BOX_FAMILIES.includes(b));
  if (boxes.length === 0) throw new ConfigError(['BACKENDS a linked worker runs your own GPU box: set A1111_URL or COMFYUI_URL']);
  // From the prefix as given, so a config the schema already narrowed (WORKER_GUILD_ID in the environment) comes out the same.
  return { ...config, QUEUE_PREFIX: guildPrefix(config.BASE_QUEUE_PREFIX, config.WORKER_GUILD_ID), BACKENDS: boxes };
}

/** A linked worker whose Redis user was deleted (unlink, rotate) says so once, instead of a stream of auth errors. */
export function watchRevocation(connections: readonly Redis[], log: Logger): void {
  let said = false;
  for (const c of connections) {
    c.on('error', (err: Error) => {
      if (said || !/WRONGPASS|NOAUTH/.test(err.message)) return;
      said = true;
      log.error('this box is no longer linked (unlinked, or its token rotated): ask a moderator for a new token with /admin gpu rotate');
    });
  }
}
