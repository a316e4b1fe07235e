import { afterEach, describe, expect, vi } from 'vitest';
import type { FakeInteraction, FakeUser } from '../fakes/discord/types.js';
import { test } from '../setup/fixtures.js';
import { ALICE, BOB, GUILD_ID, System } from './harness.js';

const CAROL: FakeUser = { id: '3333333333333333335', username: 'carol' };
const DAVE: FakeUser = { id: '3333333333333333336', username: 'dave' };

let sys: System | undefined;
afterEach(async () => {
  vi.restoreAllMocks();
  await sys?.stop();
  sys = undefined;
});

/** What the interaction's reply showed, in order: its first answer (a message), then every edit. */
function edits(s: System, i: FakeInteraction) {
  return s.replyHistory(i);
}

/** The queue position a reply shows, 1 for "you are next", null when it shows something else. */
function positionIn(content: string): number | null {
  if (content.includes('Queued: you are next.')) return 1;
  const m = /Queued: position (\d+)\./.exec(content);
  return m ? Number(m[1]) : null;
}

/** Consecutive duplicates dropped. */
const runs = <T>(xs: T[]) => xs.filter((x, k) => k === 0 || x !== xs[k - 1]);

/** The ETA a reply shows, in ms, or null. */
function etaIn(content: string): { low: number; high: number } | null {
  const unit = (u: string) => (u === 's' ? 1000 : u === 'min' ? 60_000 : 3_600_000);
  let m = /Ready in under (\d+) (s|min|h)\./.exec(content);
  if (m) return { low: 0, high: Number(m[1]) * unit(m[2]!) };
  m = /Ready in about (\d+)(?:–(\d+))? (s|min|h)\./.exec(content);
  if (m) return { low: Number(m[1]) * unit(m[3]!), high: Number(m[2] ?? m[1]) * unit(m[3]!) };
  return null;
}

function expectGapsAtLeast(times: number[], ms: number) {
  for (let k = 1; k < times.length; k++) expect(times[k]! - times[k - 1]!, `edit ${k}`).toBeGreaterThanOrEqual(ms);
}

describe('queue position and ETA', () => {
  test('the last job of four moves 4 → 3 → 2 → next as earlier jobs start; an ETA appears once a job has finished', async ({
    db,
    redisPrefix,
  }) => {
    // 30 steps × 120 ms ≈ 4 s a job: each place lasts longer than one edit interval.
    sys = await System.start({ db, redisPrefix, worker: 'none', a1111: { stepDelayMs: 120 } });
    const members = [ALICE, BOB, CAROL, DAVE];
    const replies: FakeInteraction[] = [];
    for (const [n, user] of members.entries()) {
      const i = await sys.imagine({ prompt: `job ${n + 1}`, steps: 30, user });
      await sys.discord.waitFor(() => i.original()?.content.includes('Queued') || undefined);
      replies.push(i);
    }
    // Everyone had nothing today: one priority, first come first served.
    expect(replies.map((i) => positionIn(i.original()!.content))).toEqual([1, 2, 3, 4]);
    const last = replies[3]!;
    // No worker yet (and no finished job): no invented figure, and the member is told it is the missing worker.
    expect(last.original()!.content).toContain('No time estimate: no worker is available to run jobs right now.');

    await sys.startWorker();
    await Promise.all(replies.map((i) => sys!.finalReply(i, 60_000)));

    const lastEdits = edits(sys, last);
    expect(lastEdits.at(-1)!.final).toBe(true);
    const queued = lastEdits.filter((e) => positionIn(e.content) !== null);
    expect(runs(queued.map((e) => positionIn(e.content)))).toEqual([4, 3, 2, 1]);
    for (const e of queued) {
      const pos = positionIn(e.content)!;
      // Until a worker reports and the first job finishes there is nothing to estimate from; afterwards there always is.
      if (pos >= 3) expect(e.content, e.content).toContain('No time estimate');
      else expect(etaIn(e.content), e.content).not.toBeNull();
    }
    // The "you are next" estimate held: the images came within its range, give or take the rounding and the test machine.
    const next = queued.find((e) => positionIn(e.content) === 1)!;
    const eta = etaIn(next.content)!;
    const took = lastEdits.at(-1)!.at - next.at;
    expect(took).toBeGreaterThanOrEqual(eta.low - 3000);
    expect(took).toBeLessThanOrEqual(eta.high + 5000);

    // Every other member saw their own way down too, and nobody's reply was edited faster than the window.
    expect(
      runs(
        edits(sys, replies[2]!)
          .map((e) => positionIn(e.content))
          .filter((p) => p !== null),
      ),
    ).toEqual([3, 2, 1]);
    for (const i of replies)
      expectGapsAtLeast(
        edits(sys, i)
          .filter((e) => !e.final)
          .map((e) => e.at),
        1400,
      );
    expect(sys.discord.unhandled).toEqual([]);
  }, 90_000);

  test("UTC midnight does not put a member who just made 10 images ahead of one who waited: turns go by the last 24 hours' images", async ({
    db,
    redisPrefix,
  }) => {
    // Five minutes past midnight (UTC) by the bot's clock.
    const today = new Date().toISOString().slice(0, 10);
    const yesterday = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
    const at = new Date(`${today}T00:05:00Z`);
    sys = await System.start({ db, redisPrefix, worker: 'none', env: { DEFAULT_DAILY_IMAGES: '100' }, botOverrides: { now: () => at } });
    // Bob made 10 images just before midnight, yesterday by the UTC calendar; Alice made 3 today.
    const made = (user: FakeUser, images: number, day: string) =>
      db.pool.query(`INSERT INTO member_usage (guild_id, user_id, day, images, in_flight) VALUES ($1, $2, $3::date, $4, 0)`, [
        GUILD_ID,
        user.id,
        day,
        images,
      ]);
    await made(BOB, 10, yesterday);
    await made(ALICE, 3, today);

    const alice = await sys.imagine({ prompt: 'waited first', user: ALICE });
    await sys.discord.waitFor(() => alice.original()?.content.includes('Queued') || undefined);
    const bob = await sys.imagine({ prompt: 'came second', user: BOB });
    await sys.discord.waitFor(() => bob.original()?.content.includes('Queued') || undefined);
    // By "today" alone Bob had made nothing and would go first; over the last 24 hours he made more than Alice.
    expect(positionIn(bob.original()!.content)).toBe(2);
    await sys.startWorker();
    await Promise.all([alice, bob].map((i) => sys!.finalReply(i, 60_000)));
    const { rows } = await db.pool.query<{ user_id: string }>(
      `SELECT user_id FROM jobs WHERE interaction_id IN ($1, $2) ORDER BY started_at`,
      [alice.id, bob.id],
    );
    expect(rows.map((r) => r.user_id)).toEqual([ALICE.id, BOB.id]);
  }, 90_000);

  test('a long queue: one batched position read per refresh, far places updated rarely, near ones as the queue moves', async ({
    db,
    redisPrefix,
  }) => {
    sys = await System.start({
      db,
      redisPrefix,
      worker: 'none',
      a1111: { stepDelayMs: 60 },
      env: { MAX_QUEUED_PER_USER: '20', DEFAULT_DAILY_IMAGES: '100' },
      // The reconciling sweep reads positions too (one batched read per sweep); keep it out of this count.
      botOverrides: { sweepIntervalMs: 600_000 },
    });
    // Watch the bot's position reads on its Redis client (third-party code; the call goes through unchanged).
    const redis = sys.bot!.redis;
    const statusKey = `${redisPrefix}:backend-status`;
    const reads: { at: number; ids: number }[] = [];
    const original = redis.evalsha.bind(redis) as (...args: unknown[]) => Promise<unknown>;
    vi.spyOn(redis, 'evalsha').mockImplementation(((...args: unknown[]) => {
      // [sha, numkeys, 5 keys..., job ids...]
      if (args.includes(statusKey)) reads.push({ at: Date.now(), ids: args.length - 7 });
      return original(...args);
    }) as typeof redis.evalsha);

    const replies: FakeInteraction[] = [];
    for (let n = 1; n <= 14; n++) {
      const i = await sys.imagine({ prompt: `batch ${n}`, steps: 15, user: ALICE });
      await sys.discord.waitFor(() => i.original()?.content.includes('Queued') || undefined);
      replies.push(i);
    }
    expect(positionIn(replies[13]!.original()!.content)).toBe(14);
    const before = reads.length;
    const t0 = Date.now();
    await sys.startWorker();
    await Promise.all(replies.map((i) => sys!.finalReply(i, 60_000)));
    const drainMs = Date.now() - t0;

    const refreshes = reads.slice(before);
    // Batched: a read covers every queued job at once, and reads are coalesced to at most one a second
    // however many start, finish and progress events the 14 jobs produce.
    expect(Math.max(...refreshes.map((r) => r.ids))).toBeGreaterThanOrEqual(10);
    expect(refreshes.length).toBeLessThanOrEqual(Math.ceil(drainMs / 1000) + 2);
    expectGapsAtLeast(
      refreshes.map((r) => r.at),
      900,
    );

    // Place 14 is far back: not edited for every job that starts (13, 12, 11 never shown within 15 s),
    // then followed closely once it is among the first ten.
    const far = runs(
      edits(sys, replies[13]!)
        .map((e) => positionIn(e.content))
        .filter((p): p is number => p !== null),
    );
    expect(far[0]).toBe(14);
    expect(far.filter((p) => p > 10 && p < 14)).toEqual([]);
    expect(far.some((p) => p <= 10)).toBe(true);
    expect(far.at(-1)).toBeLessThanOrEqual(3);
    // A near job follows the queue step by step.
    expect(
      runs(
        edits(sys, replies[3]!)
          .map((e) => positionIn(e.content))
          .filter((p) => p !== null),
      ).length,
    ).toBeGreaterThanOrEqual(2);
    for (const i of replies)
      expectGapsAtLeast(
        edits(sys, i)
          .filter((e) => !e.final)
          .map((e) => e.at),
        1400,
      );
  }, 120_000);

  test('after a bot restart, queued replies keep moving: the new bot picks them up and edits their places', async ({ db, redisPrefix }) => {
    sys = await System.start({ db, redisPrefix, worker: 'none', a1111: { stepDelayMs: 100 } });
    const replies: FakeInteraction[] = [];
    for (const [n, user] of [ALICE, BOB, CAROL].entries()) {
      const i = await sys.imagine({ prompt: `before restart ${n + 1}`, steps: 30, user });
      await sys.discord.waitFor(() => i.original()?.content.includes('Queued') || undefined);
      replies.push(i);
    }
    await sys.bot!.stop();
    await sys.startBot();
    await sys.startWorker();
    await Promise.all(replies.map((i) => sys!.finalReply(i, 60_000)));
    const places = edits(sys, replies[2]!)
      .map((e) => positionIn(e.content))
      .filter((p) => p !== null);
    // Shown as 3 by the first bot, then moved on by the second.
    expect(runs(places)[0]).toBe(3);
    expect(runs(places)).toContain(1);
  });

  test('a job retried after a failed attempt shows its place in the queue again while it waits', async ({ db, redisPrefix }) => {
    sys = await System.start({ db, redisPrefix, a1111: { mode: 'error500', stepDelayMs: 100 } });
    const alice = await sys.imagine({ prompt: 'second try', steps: 2, user: ALICE });
    // Alice's first attempt fails (the box is out of memory, twice: the chain's own retry too);
    // BullMQ retries the job after its backoff.
    await sys.discord.waitFor(() => sys!.a1111.requests.filter((r) => r.path === '/sdapi/v1/txt2img').length >= 2, 15_000);
    sys.a1111.setMode('ok');
    const failedAt = Date.now();
    // Bob's job takes the box meanwhile and Carol's waits; when Bob's ends, BullMQ puts Alice's retry
    // back in the queue behind Carol's, so it waits its turn there. Carol queues once Bob's job runs:
    // queued while Bob's still waited, hers would be the guild's second turn on the shared queue, and
    // Alice's retry (first turn, from before) would go ahead of it and never wait.
    const bob = await sys.imagine({ prompt: 'long one', steps: 25, user: BOB });
    await sys.discord.waitFor(() => sys!.a1111.jobs.some((j) => j.prompt === 'long one' && j.startedAt) || undefined);
    const carol = await sys.imagine({ prompt: 'next one', steps: 25, user: CAROL });
    await Promise.all([alice, bob, carol].map((i) => sys!.finalReply(i, 40_000)));
    const again = edits(sys, alice).filter((e) => e.at > failedAt && positionIn(e.content) !== null);
    expect(
      again.length,
      edits(sys, alice)
        .map((e) => e.content)
        .join(' | '),
    ).toBeGreaterThanOrEqual(1);
    expect((await db.prisma.job.findFirstOrThrow({ where: { userId: ALICE.id } })).status).toBe('succeeded');
  });
});
