import type { Redis } from 'ioredis';
import type { GpuJoin, GpuLinks, GpuLinkView } from '../commands/context.js';
import { readBackendStatus } from '../core/io/backend-status.js';
import {
  createJoinUser,
  createLinkUser,
  deleteUsers,
  guildPrefix,
  joinKeys,
  joinRequestSchema,
  joinUserName,
  linkUserName,
  newJoinToken,
  newLinkId,
  readLinkStats,
  tokenHash,
} from '../core/io/link.js';
import type { Logger } from '../core/io/logger.js';
import { gpuText } from '../core/messages.js';
import type { LinkRow, LinkStore } from './store/links.js';

/** A join token not traded within this long stops working (a rotate issues a new one). */
const TOKEN_LIFETIME_MS = 24 * 3600_000;
/** How often the watcher re-reads the pending links from Postgres (links made in this process are watched at once). */
const PENDING_REFRESH_MS = 2000;
/** A worker that has not reported for this long is offline (it reports every 10 s at most). */
const ONLINE_WITHIN_MS = 30_000;
const DEFAULT_PREFIX = 'imagebot';

export interface LinkServiceDeps {
  store: LinkStore;
  /** The bot's own connection: its Redis user needs ACL SETUSER/DELUSER (README, "Running the hosted instance"). */
  redis: Redis;
  /** A connection of its own for the watcher's blocking BLPOP. */
  blocking: Redis;
  prefix: string;
  /** LINK_REDIS_URL; unset: linking is off. */
  linkRedisUrl: string | undefined;
  log: Logger;
  /** Posts to the guild's log channel (bot/notices.ts), as the moderators' own link steps are; never throws. */
  notify: (guildId: string, content: string) => Promise<unknown>;
  now?: () => number;
}

export interface LinkService extends GpuLinks {
  /** Starts serving join requests (with linking enabled). */
  start(): void;
  stop(): Promise<void>;
}

/**
 * The bot's side of linking: the moderators' commands, and the watcher that trades join tokens
 * for the links' own Redis users (core/io/link.ts tells the exchange).
 */
export function createLinkService(d: LinkServiceDeps): LinkService {
  const now = d.now ?? Date.now;
  const p = d.prefix;
  let stopped = false;
  let loop: Promise<void> | undefined;
  let pending: LinkRow[] = [];
  let pendingAt = 0;
  // The watcher blocks on this key too, so a link made here is watched at once rather than after
  // the BLPOP's timeout (another bot process's links are picked up at the next refresh).
  const wakeKey = `${p}:join:wake`;

  const refreshSoon = async () => {
    pendingAt = 0;
    await d.redis.multi().rpush(wakeKey, '1').pexpire(wakeKey, 10_000).exec();
  };

  const joinFor = (linkId: string, token: string, expiresAt: Date): GpuJoin => ({
    linkId,
    token,
    expiresAt,
    redisUrl: d.linkRedisUrl ?? '',
    ...(p === DEFAULT_PREFIX ? {} : { queuePrefix: p }),
  });

  /** Serves one join request: the link's own user, the answer, then the join user is gone (one-time). */
  async function serveJoin(cached: LinkRow, rawRequest: string): Promise<void> {
    const keys = joinKeys(p, cached.id);
    // The row as it is now: markJoined checks its token is still the one in force.
    const link = (await d.store.get(cached.guildId, cached.id)) ?? cached;
    const parsed = joinRequestSchema.safeParse(JSON.parse(rawRequest));
    const host = parsed.success ? parsed.data.host : 'unknown';
    const user = linkUserName(p, link.id);
    const password = await createLinkUser(d.redis, p, link.guildId, link.id);
    if (!(await d.store.markJoined(link, user, host, new Date(now())))) {
      // Revoked or rotated between the request and now: the new user must not outlive that.
      await deleteUsers(d.redis, [user]);
      await d.redis.rpush(keys.answer, JSON.stringify({ ok: false, error: 'this link was revoked or its token rotated meanwhile' }));
      await d.redis.pexpire(keys.answer, 60_000);
      return;
    }
    await d.redis
      .multi()
      .rpush(keys.answer, JSON.stringify({ ok: true, guildId: link.guildId, username: user, password }))
      .pexpire(keys.answer, 60_000)
      .exec();
    // No new AUTH with the token from now on; the box's open connection still reads its answer.
    await d.redis.call('ACL', 'SETUSER', joinUserName(p, link.id), 'off');
    for (let i = 0; i < 100 && (await d.redis.llen(keys.answer)) > 0; i++) await new Promise((r) => setTimeout(r, 50));
    await deleteUsers(d.redis, [joinUserName(p, link.id)]);
    await d.redis.del(keys.request, keys.answer);
    d.log.info({ linkId: link.id, guildId: link.guildId, host }, 'gpu box joined');
    await d.notify(link.guildId, gpuText.joined(link.id));
  }

  async function expireTokens(): Promise<void> {
    for (const link of await d.store.expiredUnjoined(new Date(now()))) {
      await deleteUsers(d.redis, [joinUserName(p, link.id)]);
      if (await d.store.markExpired(link)) await d.notify(link.guildId, gpuText.tokenExpired(link.id));
    }
  }

  async function watch(): Promise<void> {
    while (!stopped) {
      try {
        if (now() - pendingAt >= PENDING_REFRESH_MS) {
          pending = await d.store.pending(new Date(now()));
          pendingAt = now();
          await expireTokens();
        }
        const popped = await d.blocking.blpop(...pending.map((l) => joinKeys(p, l.id).request), wakeKey, PENDING_REFRESH_MS / 1000);
        if (!popped) continue;
        if (popped[0] === wakeKey) {
          pendingAt = 0;
          continue;
        }
        const link = pending.find((l) => joinKeys(p, l.id).request === popped[0]);
        if (!link) continue;
        pending = pending.filter((l) => l !== link);
        await serveJoin(link, popped[1]).catch(async (err: unknown) => {
          d.log.error({ err, linkId: link.id }, 'gpu box join failed');
          await d.store.setError(link.id, `join failed: ${err instanceof Error ? err.message : String(err)}`).catch(() => undefined);
        });
      } catch (err) {
        if (stopped) return;
        d.log.warn({ err }, 'gpu link watcher');
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  return {
    enabled: d.linkRedisUrl !== undefined,

    async link(guildId, actorId) {
      const id = newLinkId();
      const token = newJoinToken(id);
      const expiresAt = new Date(now() + TOKEN_LIFETIME_MS);
      // Postgres first: a join user without its row could never be served nor expired.
      await d.store.create(guildId, actorId, id, tokenHash(token), expiresAt);
      await createJoinUser(d.redis, p, id, token);
      await refreshSoon();
      return joinFor(id, token, expiresAt);
    },

    async status(guildId) {
      const links = await d.store.active(guildId);
      if (links.length === 0) return [];
      const space = guildPrefix(p, guildId);
      const reports = await readBackendStatus(d.redis, space);
      const t = now();
      return Promise.all(
        links.map(async (l): Promise<GpuLinkView> => {
          const mine = reports.filter((r) => r.link === l.id && t - r.at < ONLINE_WITHIN_MS);
          const stats = await readLinkStats(d.redis, space, l.id, t);
          const lastSeenAt = reports.filter((r) => r.link === l.id).reduce<number | undefined>((m, r) => Math.max(m ?? 0, r.at), undefined);
          const state = l.joinedAt
            ? mine.some((r) => r.healthy)
              ? 'online'
              : 'offline'
            : l.tokenExpiresAt.getTime() > t
              ? 'waiting'
              : 'expired';
          return {
            id: l.id,
            createdBy: l.createdBy,
            createdAt: l.createdAt,
            state,
            tokenExpiresAt: l.tokenExpiresAt,
            joinedAt: l.joinedAt,
            busy: mine.some((r) => r.inFlight > 0),
            boxes: mine.map((r) => ({ backend: r.backend, healthy: r.healthy })),
            jobsToday: stats.jobsToday,
            ...(stats.model ? { model: stats.model } : {}),
            ...(lastSeenAt !== undefined ? { lastSeenAt } : {}),
            lastError: l.lastError,
          };
        }),
      );
    },

    async unlink(guildId, actorId, linkId) {
      const link = await d.store.get(guildId, linkId);
      if (!link || link.revokedAt) return false;
      // Redis first: access ends now, whatever happens to the bookkeeping after.
      await deleteUsers(d.redis, [linkUserName(p, link.id), joinUserName(p, link.id)]);
      await d.redis.del(joinKeys(p, link.id).request, joinKeys(p, link.id).answer);
      await d.store.revoke(link, actorId, new Date(now()));
      // Again once revoked: a join served meanwhile (its request popped before the users went) may
      // have made the link user again and recorded itself before the revoke. Any later join finds
      // the link revoked and deletes its user itself.
      await deleteUsers(d.redis, [linkUserName(p, link.id)]);
      d.log.info({ linkId, guildId }, 'gpu box unlinked');
      return true;
    },

    async rotate(guildId, actorId, linkId) {
      const link = await d.store.get(guildId, linkId);
      if (!link || link.revokedAt) return null;
      await deleteUsers(d.redis, [linkUserName(p, link.id), joinUserName(p, link.id)]);
      await d.redis.del(joinKeys(p, link.id).request, joinKeys(p, link.id).answer);
      const token = newJoinToken(link.id);
      const expiresAt = new Date(now() + TOKEN_LIFETIME_MS);
      await d.store.rotate(link, actorId, tokenHash(token), expiresAt);
      await createJoinUser(d.redis, p, link.id, token);
      await refreshSoon();
      d.log.info({ linkId, guildId }, 'gpu link token rotated');
      return joinFor(link.id, token, expiresAt);
    },

    start() {
      if (!d.linkRedisUrl || loop) return;
      loop = watch();
    },

    async stop() {
      stopped = true;
      d.blocking.disconnect();
      await loop;
    },
  };
}
