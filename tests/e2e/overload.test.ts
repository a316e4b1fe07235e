import pg from 'pg';
import { afterEach, expect } from 'vitest';
import { text } from '../../core/messages.js';
import type { FakeInteraction } from '../fakes/discord/types.js';
import { type TestDb, test } from '../setup/fixtures.js';
import { ALICE, BOB, GUILD_ID, System } from './harness.js';

const CAROL = { id: '3333333333333333335', username: 'carol' };

let sys: System | undefined;
let holder: pg.Client | undefined;
afterEach(async () => {
  await holder?.query('ROLLBACK').catch(() => undefined);
  await holder?.end();
  await sys?.stop();
  sys = undefined;
  holder = undefined;
});

/**
 * Holds Alice's usage row the way a stuck session would (an uncommitted insert): each of her
 * reservations then waits on it inside Postgres, holding its connection, until the lock timeout.
 */
async function holdAlicesRow(db: TestDb): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  await client.query('BEGIN');
  await client.query(`INSERT INTO member_usage (guild_id, user_id, day, images, in_flight) VALUES ($1, $2, current_date, 0, 0)`, [
    GUILD_ID,
    ALICE.id,
  ]);
  return client;
}

/** Sessions of the test's database waiting on a lock: admissions stuck behind Alice's row. */
async function blockedStatements(db: TestDb): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
  );
  return rows[0]!.n;
}

/** What the member reads: the first answer's text, or what replaced a deferred reply. */
async function answer(s: System, i: FakeInteraction): Promise<string> {
  return (await s.answerOf(i)).content;
}

test('a finished job is settled and posted while admissions hold every database connection they may take', async ({ db, redisPrefix }) => {
  // No sweep in this test: only the job's own events can settle and post it.
  sys = await System.start({ db, redisPrefix, worker: 'none', botOverrides: { sweepIntervalMs: 600_000 } });
  const bob = await sys.imagine({ prompt: 'queued before the crowd', steps: 2, user: BOB });
  expect(await answer(sys, bob)).toContain('Queued');

  holder = await holdAlicesRow(db);
  // More admissions than the bot's pool has connections, every one stuck on Alice's row.
  const crowd = await Promise.all(Array.from({ length: 12 }, (_, n) => sys!.imagine({ prompt: `crowd ${n}`, steps: 2 })));
  await sys.discord.waitForAsync(async () => ((await blockedStatements(db)) >= 8 ? true : undefined));

  // Bob's job runs and finishes now, with the admissions still stuck.
  await sys.startWorker();
  const result = await sys.finalReply(bob);
  expect(result.attachments.some((a) => a.filename.startsWith('image-'))).toBe(true);
  // Marked delivered once Discord has answered the upload: a moment after the fake saw it.
  const row = await sys.discord.waitForAsync(async () => {
    const { rows } = await db.pool.query<{ status: string; delivered: boolean }>(
      `SELECT status::text, delivered_at IS NOT NULL AS delivered FROM jobs WHERE user_id = $1`,
      [BOB.id],
    );
    return rows[0]?.delivered ? rows[0] : undefined;
  });
  expect(row).toEqual({ status: 'succeeded', delivered: true });
  expect(await blockedStatements(db)).toBeGreaterThan(0);
  await holder.query('ROLLBACK');
  await Promise.all(crowd.map((i) => answer(sys!, i)));
}, 60_000);

test('an admission beyond the line is told at once that the bot is busy, with nothing reserved', async ({ db, redisPrefix }) => {
  sys = await System.start({
    db,
    redisPrefix,
    env: { ADMISSION_MAX_WAITING: '2' },
    // The line's wait is not what this test is about: only its length sheds here.
    botOverrides: { admissionWaitMs: 60_000 },
  });
  // Postgres has been answering admissions.
  await sys.finalReply(await sys.imagine({ prompt: 'before the crowd', steps: 2, user: BOB }));

  holder = await holdAlicesRow(db);
  // Every slot admissions may hold stuck on Alice's row, and the line behind them full.
  const crowd = await Promise.all(Array.from({ length: 13 }, (_, n) => sys!.imagine({ prompt: `crowd ${n}`, steps: 2 })));
  await sys.discord.waitForAsync(async () => ((await blockedStatements(db)) >= 8 ? true : undefined));

  const carol = await sys.imagine({ prompt: 'one too many', steps: 2, user: CAROL });
  expect(await answer(sys, carol)).toBe(text.botBusy);
  // Nothing reserved, nothing recorded: her quota is untouched.
  const usage = await db.pool.query(`SELECT 1 FROM member_usage WHERE user_id = $1`, [CAROL.id]);
  const jobs = await db.pool.query(`SELECT 1 FROM jobs WHERE user_id = $1`, [CAROL.id]);
  expect([usage.rowCount, jobs.rowCount]).toEqual([0, 0]);
  await holder.query('ROLLBACK');
  // Alice's admissions beyond the line were shed the same way.
  const alice = await Promise.all(crowd.map((i) => answer(sys!, i)));
  expect(alice.filter((t) => t === text.botBusy).length).toBeGreaterThan(0);
}, 60_000);
