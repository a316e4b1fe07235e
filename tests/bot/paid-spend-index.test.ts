import { describe, expect } from 'vitest';
import { spentSinceSql } from '../../core/budget.js';
import { test } from '../setup/fixtures.js';

/**
 * Every admission sums the guild's paid spend this month. The partial index that keeps that sum
 * off the GPU-box rows only serves the query while its predicate is exactly the one core/budget.ts
 * writes: a new paid family or a reworded rule must come with a migration that rebuilds the index.
 */
describe("the month's paid spend", () => {
  test('is summed from the paid-spend index alone, whatever the number of GPU-box rows', async ({ db }) => {
    // Enough box rows that reading them all would be the planner's worst choice.
    await db.pool.query(`
      INSERT INTO jobs (id, guild_id, channel_id, user_id, kind, params, image_count, day, channel_nsfw, application_id, interaction_id, interaction_token)
      SELECT gen_random_uuid(), 'g1', 'c', 'u', 'txt2img', '{}'::jsonb, 1, current_date, false, 'a', 'i' || n, 't' FROM generate_series(1, 5000) n`);
    await db.pool.query(`
      INSERT INTO cost_ledger (job_id, attempt_no, guild_id, backend, outcome, seconds, cost_usd, own_usd)
      SELECT id, 1, 'g1', CASE WHEN interaction_id = 'i1' THEN 'replicate' ELSE 'a1111#2' END, 'succeeded', 1,
             CASE WHEN interaction_id = 'i1' THEN 0.25 ELSE 0 END, 0 FROM jobs`);
    await db.pool.query('ANALYZE cost_ledger');
    const sql = `SELECT ${spentSinceSql('$1', '$2')}::float8 AS spent`;
    expect((await db.pool.query(sql, ['g1', '2000-01-01'])).rows[0].spent).toBeCloseTo(0.25, 6);
    const client = await db.pool.connect();
    try {
      // As the store runs it after a few executions: a generic plan, parameters unknown.
      await client.query('SET plan_cache_mode = force_generic_plan');
      await client.query(`PREPARE spent(text, date) AS ${sql}`);
      const plan = JSON.stringify((await client.query("EXPLAIN (FORMAT JSON) EXECUTE spent('g1', '2000-01-01')")).rows[0]);
      expect(plan).toContain('cost_ledger_paid_idx');
      expect(plan).not.toContain('Seq Scan');
    } finally {
      client.release();
    }
  });
});
