import pg from 'pg';
import { PgJobStore } from '../../bot/store/jobs.js';
import { StatsStore } from '../../bot/store/stats.js';
import { PAID_FAMILIES } from '../../core/backend-families.js';
import { parseImagineOptions } from '../../core/generation.js';
import type { ReserveInput } from '../../core/ports.js';
import { describe, expect, test } from '../setup/fixtures.js';
import { databaseBefore } from '../setup/upgrade.js';

/**
 * A guild's paid spend this month decides whether paid providers may serve it (the budget). The
 * settle statement keeps it as a sum per guild and month, so admission reads one row; these tests
 * hold that sum to the ledger it summarises, and to what an upgraded deployment had already spent.
 */

const thisMonth = () => `${new Date().toISOString().slice(0, 7)}-01`;
const guild = '2222222222222222222';

function input(guildId: string, over: Partial<ReserveInput> = {}): ReserveInput {
  return {
    actor: { guildId, channelId: '4444444444444444444', userId: '3333333333333333333', channelNsfw: false },
    interaction: { applicationId: '1111111111111111111', interactionId: String(Math.random()), token: 'tok' },
    request: parseImagineOptions({ prompt: 'x' }),
    day: new Date().toISOString().slice(0, 10),
    deploymentDailyLimit: 100,
    maxInFlight: 50,
    monthStart: thisMonth(),
    deploymentMonthlyBudgetUsd: 1,
    ...over,
  };
}

type Attempt = { backend: string; outcome: 'succeeded' | 'failed' | 'cancelled'; seconds: number; costUsd: number };
const succeeded = (attempts: Attempt[]) => ({
  status: 'succeeded' as const,
  result: { backend: 'x', seed: 1, width: 1024, height: 1024, imageKeys: ['k0'], runMs: 10, costUsd: 0, attempts },
});

async function paidLedgerSum(pool: pg.Pool, guildId: string): Promise<number> {
  const { rows } = await pool.query<{ s: number }>(
    `SELECT COALESCE(sum(cost_usd), 0)::float8 AS s FROM cost_ledger
     WHERE guild_id = $1 AND created_at >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
       AND split_part(backend, '#', 1) IN ('replicate', 'huggingface')`,
    [guildId],
  );
  return rows[0]!.s;
}

describe("a guild's paid spend this month", () => {
  test('is what its paid ledger rows add up to, booked once whatever settles twice, and admission reads it', async ({ db }) => {
    const store = new PgJobStore(db.pool);
    const stats = new StatsStore(db.pool);
    const admit = async (guildId = guild) => {
      const r = await store.reserve(input(guildId));
      if (!r.ok) throw new Error(`not admitted: ${r.reason}`);
      return r;
    };
    // A failed Replicate attempt then the box; a Hugging Face endpoint (#2); the box alone; another guild's Replicate.
    const a = await admit();
    await store.settle(
      a.jobId,
      succeeded([
        { backend: 'replicate', outcome: 'failed', seconds: 1, costUsd: 0.02 },
        { backend: 'a1111', outcome: 'succeeded', seconds: 2, costUsd: 0 },
      ]),
    );
    const b = await admit();
    await store.settle(b.jobId, succeeded([{ backend: 'huggingface#2', outcome: 'succeeded', seconds: 3, costUsd: 0.05 }]));
    // A second settle (a duplicate event, a restart) is a no-op: nothing is booked twice.
    await store.settle(b.jobId, succeeded([{ backend: 'huggingface#2', outcome: 'succeeded', seconds: 3, costUsd: 0.05 }]));
    const c = await admit();
    await store.settle(c.jobId, { status: 'failed', code: 'all_backends_failed', message: 'down', attempts: [] });
    const other = await admit('9999999999999999999');
    await store.settle(other.jobId, succeeded([{ backend: 'replicate', outcome: 'succeeded', seconds: 1, costUsd: 0.5 }]));

    expect(await stats.spentInMonth(guild, thisMonth())).toBeCloseTo(0.07, 6);
    expect(await stats.spentInMonth(guild, thisMonth())).toBeCloseTo(await paidLedgerSum(db.pool, guild), 6);
    expect(await stats.spentInMonth('9999999999999999999', thisMonth())).toBeCloseTo(0.5, 6);
    // What the next /imagine is told it may still spend on paid providers.
    const next = await admit();
    expect(next.spentUsd).toBeCloseTo(0.07, 6);
    expect(next.budgetLeftUsd).toBeCloseTo(1 - 0.07, 6);
    // Another month starts from nothing.
    expect(await stats.spentInMonth(guild, '2001-01-01')).toBe(0);
  });

  test("the trigger that keeps it counts exactly core/backend-families.ts's paid families", async ({ db }) => {
    const { rows } = await db.pool.query<{ def: string }>(
      `SELECT pg_get_triggerdef(oid) AS def FROM pg_trigger WHERE tgname = 'cost_ledger_month_spend'`,
    );
    const listed = [...(rows[0]?.def.match(/ANY \(ARRAY\[(.*?)\]\)/)?.[1] ?? '').matchAll(/'([^']+)'/g)].map((m) => m[1]);
    expect(listed.sort()).toEqual([...PAID_FAMILIES].sort());
  });

  test('a paid attempt an older bot books while or after the migration runs still counts (an upgrade without downtime)', async () => {
    const older = await databaseBefore('month_spend');
    const { url, name, admin: adminClient } = older;
    try {
      const pool = new pg.Pool({ connectionString: url });
      const oldBot = new pg.Client({ connectionString: url });
      await oldBot.connect();
      try {
        await pool.query(`
          INSERT INTO jobs (id, guild_id, channel_id, user_id, kind, params, image_count, day, channel_nsfw, application_id, interaction_id, interaction_token)
          SELECT gen_random_uuid(), 'g1', 'c', 'u', 'txt2img', '{}'::jsonb, 1, current_date, false, 'a', 'i' || n, 't' FROM generate_series(1, 3) n`);
        // The ledger insert of the settle statement as the version before the kept sum wrote it: no total kept.
        const oldSettleBooks = (client: pg.Pool | pg.Client, interactionId: string, usd: number) =>
          client.query(
            `INSERT INTO cost_ledger (job_id, attempt_no, guild_id, backend, outcome, seconds, cost_usd, own_usd)
             SELECT id, 1, guild_id, 'replicate', 'succeeded', 1, $2::numeric, 0 FROM jobs WHERE interaction_id = $1
             ON CONFLICT (job_id, attempt_no) DO NOTHING`,
            [interactionId, usd],
          );
        await oldSettleBooks(pool, 'i1', 0.25);
        // The old bot is settling a job (its transaction open) when the migrations start.
        await oldBot.query('BEGIN');
        await oldSettleBooks(oldBot, 'i2', 0.125);
        const migrating = older.upgrade();
        await expect
          .poll(
            async () =>
              (
                await adminClient.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'`, [
                  name,
                ])
              ).rows[0].n,
            { timeout: 20_000, interval: 50 },
          )
          .toBeGreaterThan(0);
        await oldBot.query('COMMIT');
        await migrating;
        // And settles one more before it is stopped.
        await oldSettleBooks(oldBot, 'i3', 0.5);

        expect(await new StatsStore(pool).spentInMonth('g1', thisMonth())).toBeCloseTo(0.875, 6);
        expect(await paidLedgerSum(pool, 'g1')).toBeCloseTo(0.875, 6);
      } finally {
        await oldBot.end();
        await pool.end();
      }
    } finally {
      await older.drop();
    }
  });

  test('spent before an upgrade to the kept sum still counts after it, month by month', async () => {
    // The deployment as it was: every migration before the one that keeps the sum.
    const older = await databaseBefore('month_spend');
    try {
      const pool = new pg.Pool({ connectionString: older.url });
      try {
        await pool.query(`
          INSERT INTO jobs (id, guild_id, channel_id, user_id, kind, params, image_count, day, channel_nsfw, application_id, interaction_id, interaction_token)
          SELECT gen_random_uuid(), 'g1', 'c', 'u', 'txt2img', '{}'::jsonb, 1, current_date, false, 'a', 'i' || n, 't' FROM generate_series(1, 4) n`);
        // Replicate this month and last month, Hugging Face this month, the box this month.
        await pool.query(`
          INSERT INTO cost_ledger (job_id, attempt_no, guild_id, backend, outcome, seconds, cost_usd, created_at)
          SELECT id, 1, 'g1', (ARRAY['replicate', 'replicate', 'huggingface#3', 'a1111'])[substr(interaction_id, 2)::int], 'succeeded', 1,
                 (ARRAY[0.25, 0.125, 0.5, 0])[substr(interaction_id, 2)::int],
                 CASE WHEN interaction_id = 'i2' THEN date_trunc('month', now()) - interval '1 day' ELSE now() END
          FROM jobs`);
        await older.upgrade();

        const stats = new StatsStore(pool);
        expect(await stats.spentInMonth('g1', thisMonth())).toBeCloseTo(0.75, 6);
        const lastMonth = new Date(`${thisMonth()}T00:00:00Z`);
        lastMonth.setUTCMonth(lastMonth.getUTCMonth() - 1);
        expect(await stats.spentInMonth('g1', lastMonth.toISOString().slice(0, 10))).toBeCloseTo(0.125, 6);
      } finally {
        await pool.end();
      }
    } finally {
      await older.drop();
    }
  });
});
