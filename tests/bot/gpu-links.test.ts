import { afterEach, expect } from 'vitest';
import { createLinkService, type LinkService } from '../../bot/links.js';
import { LinkStore } from '../../bot/store/links.js';
import { linkUserName } from '../../core/io/link.js';
import { createLogger } from '../../core/io/logger.js';
import { createRedis } from '../../core/io/queue.js';
import { joinWithToken } from '../../worker/link.js';
import { deleteTestUsers, TEST_REDIS_URL, until } from '../setup/acl.js';
import { describe, type TestDb, test } from '../setup/fixtures.js';

const GUILD = '4444444444444444441';
const HOUR = 3600_000;

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** The bot's link service over real Postgres and Redis, with a clock the test moves; `notices` is what the log channel gets. */
function service(db: TestDb, redisPrefix: string) {
  const clock = { now: Date.now() };
  const notices: { guildId: string; content: string }[] = [];
  const redis = createRedis(TEST_REDIS_URL, 'producer');
  const s: LinkService = createLinkService({
    store: new LinkStore({ prisma: async () => db.prisma }),
    redis,
    blocking: createRedis(TEST_REDIS_URL, 'blocking', { lazyConnect: true }),
    prefix: redisPrefix,
    linkRedisUrl: TEST_REDIS_URL,
    log: createLogger({ level: 'silent' }),
    now: () => clock.now,
    notify: async (guildId, content) => notices.push({ guildId, content }) > 0,
  });
  cleanups.push(() => deleteTestUsers(redisPrefix));
  cleanups.push(() => redis.quit());
  cleanups.push(() => s.stop());
  return { s, clock, notices };
}

describe("a GPU box's own steps are announced in the log channel, like the moderators' ones", () => {
  test('a box joining with its token', async ({ db, redisPrefix }) => {
    const { s, notices } = service(db, redisPrefix);
    s.start();
    const join = await s.link(GUILD, 'mod');
    await joinWithToken(TEST_REDIS_URL, redisPrefix, join.token);
    const notice = await until(async () => notices[0], 5000);
    expect(notice).toEqual({ guildId: GUILD, content: `🖥️ GPU box \`${join.linkId}\` joined: it runs this server's jobs from now on.` });
    expect(notice.content).not.toContain(join.token.split('.')[2]!);
  });

  test('a join token expiring unused, announced once', async ({ db, redisPrefix }) => {
    const { s, clock, notices } = service(db, redisPrefix);
    const join = await s.link(GUILD, 'mod');
    clock.now += 25 * HOUR;
    s.start();
    const notice = await until(async () => notices[0], 5000);
    expect(notice).toEqual({
      guildId: GUILD,
      content: `⌛ The join token of GPU box \`${join.linkId}\` expired unused. \`/admin gpu rotate link:${join.linkId}\` issues a new one.`,
    });
    // The watcher looks again every 2 s: the expiry stays one notice.
    await new Promise((r) => setTimeout(r, 2500));
    expect(notices).toHaveLength(1);
    expect(await db.prisma.auditLog.count({ where: { action: 'gpu token expired' } })).toBe(1);
  });
});

test('an unlink that lands while a join is being served leaves the box no Redis user', async ({ db, redisPrefix }) => {
  const real = new LinkStore({ prisma: async () => db.prisma });
  // The join's read of the link waits until the unlink has taken the users away and is about to
  // record the revoke; the revoke waits until the join was recorded: the order that lost before.
  let unlinking!: () => void;
  const atRevoke = new Promise<void>((r) => (unlinking = r));
  let joinRecorded!: () => void;
  const recorded = new Promise<void>((r) => (joinRecorded = r));
  let gets = 0;
  const store = Object.assign(Object.create(real) as LinkStore, {
    get: async (guildId: string, id: string) => {
      const row = await real.get(guildId, id);
      if (++gets === 1) await atRevoke; // serveJoin's read
      return row;
    },
    markJoined: async (...a: Parameters<LinkStore['markJoined']>) => {
      const ok = await real.markJoined(...a);
      joinRecorded();
      return ok;
    },
    revoke: async (...a: Parameters<LinkStore['revoke']>) => {
      unlinking();
      await recorded;
      return real.revoke(...a);
    },
  });
  const redis = createRedis(TEST_REDIS_URL, 'producer');
  const s = createLinkService({
    store,
    redis,
    blocking: createRedis(TEST_REDIS_URL, 'blocking', { lazyConnect: true }),
    prefix: redisPrefix,
    linkRedisUrl: TEST_REDIS_URL,
    log: createLogger({ level: 'silent' }),
    now: () => Date.now(),
    notify: async () => true,
  });
  cleanups.push(() => deleteTestUsers(redisPrefix));
  cleanups.push(() => redis.quit());
  cleanups.push(() => s.stop());
  const join = await s.link(GUILD, 'mod');
  s.start();
  const joining = joinWithToken(TEST_REDIS_URL, redisPrefix, join.token).catch(() => undefined);
  await until(async () => (gets >= 1 ? true : undefined), 5000);
  expect(await s.unlink(GUILD, 'mod', join.linkId)).toBe(true);
  await joining;
  expect(await redis.call('ACL', 'GETUSER', linkUserName(redisPrefix, join.linkId))).toBeNull();
});
