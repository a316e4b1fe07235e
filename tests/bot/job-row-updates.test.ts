import pg from 'pg';
import { PgJobStore } from '../../bot/store/jobs.js';
import { parseImagineOptions } from '../../core/generation.js';
import { describe, expect, test } from '../setup/fixtures.js';

/**
 * A job's row is written four times on its way (admitted, started, settled, delivered). The start
 * and the settle change no indexed column, so Postgres rewrites the row in place on its page (a
 * HOT update) instead of adding an entry to each of the table's eight indexes. An index that names
 * a column they write (status, above all) would quietly double the per-job index work.
 */
describe("a job's row on the hot path", () => {
  test('starting and settling a job rewrite no index of the jobs table', async ({ db }) => {
    // One connection, so its statistics can be flushed before they are read.
    const pool = new pg.Pool({ connectionString: db.url, max: 1 });
    try {
      const store = new PgJobStore(pool);
      const jobs: string[] = [];
      for (let i = 0; i < 5; i++) {
        const r = await store.reserve({
          actor: { guildId: 'g', channelId: 'c', userId: `u${i}`, channelNsfw: false },
          interaction: { applicationId: 'a', interactionId: `i${i}`, token: 't' },
          request: parseImagineOptions({ prompt: 'a lighthouse' }),
          day: '2026-12-07',
          deploymentDailyLimit: 10,
          maxInFlight: 5,
          monthStart: '2026-12-01',
          deploymentMonthlyBudgetUsd: 5,
        });
        if (!r.ok) throw new Error('not admitted');
        jobs.push(r.jobId);
      }
      const before = await updates(pool);
      await store.markRunning(jobs.map((jobId) => ({ jobId, at: new Date() })));
      for (const jobId of jobs) {
        const settled = await store.settle(jobId, {
          status: 'succeeded',
          result: {
            backend: 'a1111',
            seed: 1,
            width: 1024,
            height: 1024,
            imageKeys: ['k0'],
            runMs: 10,
            costUsd: 0,
            attempts: [{ backend: 'a1111', outcome: 'succeeded', seconds: 1, costUsd: 0 }],
          },
        });
        expect(settled?.status).toBe('succeeded');
      }
      const after = await updates(pool);
      expect(after.all - before.all).toBe(10);
      expect(after.hot - before.hot).toBe(10);
    } finally {
      await pool.end();
    }
  });
});

/** The jobs table's updates so far, and how many of them were HOT, as this connection has reported them. */
async function updates(pool: pg.Pool): Promise<{ all: number; hot: number }> {
  const c = await pool.connect();
  try {
    await c.query('SELECT pg_stat_force_next_flush()');
    await c.query('SELECT 1');
    await c.query('SELECT pg_stat_clear_snapshot()');
    const r = await c.query<{ all: string; hot: string }>(
      "SELECT n_tup_upd AS all, n_tup_hot_upd AS hot FROM pg_stat_user_tables WHERE relname = 'jobs'",
    );
    return { all: Number(r.rows[0]!.all), hot: Number(r.rows[0]!.hot) };
  } finally {
    c.release();
  }
}
