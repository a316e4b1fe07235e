/**
 * What one reconciliation pass costs Postgres on a table that has grown: 100 000 job rows spread
 * over 90 days (all delivered but a few hundred open ones), the sweep's reads timed pass after pass
 * on a scratch database, with the plan Postgres chose.
 *
 *   npm run bench:sweep        (BENCH_ROWS=100000 BENCH_OPEN=300 BENCH_PASSES=50 BENCH_DAYS=90)
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { PgJobStore } from '../bot/store/jobs.js';
import type { SweepCursor } from '../core/ports.js';
import { applyMigrations } from '../prisma/migrate.js';

const ROWS = Number(process.env.BENCH_ROWS ?? 100_000);
const OPEN = Number(process.env.BENCH_OPEN ?? 300);
const PASSES = Number(process.env.BENCH_PASSES ?? 50);
/** Over how many days the delivered jobs spread: 90 is a quiet server, 2 a busy one (50 000 jobs a day). */
const DAYS = Number(process.env.BENCH_DAYS ?? 90);
const ADMIN_URL = process.env.TEST_PG_URL || 'postgresql://postgres@127.0.0.1:5432/postgres';
const out = (s: string) => process.stdout.write(`${s}\n`);

function dbUrl(name: string): string {
  const u = new URL(ADMIN_URL);
  u.pathname = `/${name}`;
  return u.toString();
}

async function admin(sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: ADMIN_URL });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

const PARAMS = JSON.stringify({
  kind: 'txt2img',
  prompt: 'a lighthouse at dusk, volumetric light, highly detailed, 35mm photograph',
  negative: 'blurry, lowres',
  width: 1024,
  height: 1024,
  count: 1,
  seed: 12345,
  steps: 30,
  guidance: 6.5,
  preset: 'sdxl',
  replicateModel: 'sdxl',
});

/** ROWS jobs over 90 days, delivered; OPEN of them undelivered (queued, running or settled) in the last hour. */
async function seed(pool: pg.Pool): Promise<void> {
  await pool.query(
    `INSERT INTO jobs (guild_id, channel_id, user_id, kind, status, params, image_count, day, application_id, interaction_id,
                       interaction_token, created_at, started_at, finished_at, delivered_at, backend, result_message_id)
     SELECT '2222222222222222222', '4444444444444444444', (3333333333333333333 + g % 500)::text, 'txt2img', 'succeeded', $1::jsonb, 1,
            (now() - (g * interval '1 day' * $3 / $2))::date, '1111111111111111111', (9000000000000000000 + g)::text, 'tok',
            now() - (g * interval '1 day' * $3 / $2), now() - (g * interval '1 day' * $3 / $2), now() - (g * interval '1 day' * $3 / $2),
            now() - (g * interval '1 day' * $3 / $2), 'a1111', (8000000000000000000 + g)::text
     FROM generate_series(1, $2::int) AS g`,
    [PARAMS, ROWS - OPEN, DAYS],
  );
  await pool.query(
    `INSERT INTO jobs (guild_id, channel_id, user_id, kind, status, params, image_count, day, application_id, interaction_id,
                       interaction_token, created_at)
     SELECT '2222222222222222222', '4444444444444444444', (3333333333333333333 + g % 500)::text, 'txt2img',
            (ARRAY['queued', 'running', 'succeeded']::job_status[])[1 + g % 3], $1::jsonb, 1, now()::date,
            '1111111111111111111', (7000000000000000000 + g)::text, 'tok', now() - (g * interval '1 second')
     FROM generate_series(1, $2::int) AS g`,
    [PARAMS, OPEN],
  );
  await pool.query('VACUUM ANALYZE jobs');
}

function stats(times: number[]): string {
  const s = [...times].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]!.toFixed(2);
  return `median ${at(0.5)} ms, p95 ${at(0.95)} ms`;
}

const name = `imagebot_bench_sweep_${randomBytes(4).toString('hex')}`;
await admin(`CREATE DATABASE "${name}"`);
const pool = new pg.Pool({ connectionString: dbUrl(name), max: 2 });
try {
  await applyMigrations(dbUrl(name));
  const t0 = performance.now();
  await seed(pool);
  out(`seeded ${ROWS} jobs (${OPEN} undelivered) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const store = new PgJobStore(pool);
  // What one pass of the sweep reads from Postgres: page after page of the open jobs (bot/jobs/reconcile.ts).
  const pass = async () => {
    const all = [];
    for (let after: SweepCursor | null = null; ; ) {
      const page = await store.listUndelivered(after, 500);
      all.push(...page);
      const last = page.at(-1);
      if (page.length < 500 || !last) return all;
      after = { createdAt: last.createdAt, id: last.id };
    }
  };
  for (let i = 0; i < 3; i++) await pass();
  const times: number[] = [];
  let found = 0;
  for (let i = 0; i < PASSES; i++) {
    const t = performance.now();
    found = (await pass()).length;
    times.push(performance.now() - t);
  }
  const plan = await pool.query(
    `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT id FROM jobs j
     WHERE j.delivered_at IS NULL AND j.undeliverable_at IS NULL AND (j.created_at, j.id) > ('-infinity', '00000000-0000-0000-0000-000000000000')
       AND (j.next_delivery_at IS NULL OR j.next_delivery_at <= now())
     ORDER BY j.created_at, j.id LIMIT 500`,
  );
  const top = (plan.rows[0] as { 'QUERY PLAN': [{ Plan: Record<string, unknown> }] })['QUERY PLAN'][0].Plan;
  const scan = (p: Record<string, unknown>): string =>
    p.Plans ? scan((p.Plans as Record<string, unknown>[])[0]!) : `${p['Node Type']}${p['Index Name'] ? ` on ${p['Index Name']}` : ''}`;
  out(`sweep pass over ${ROWS} rows spread over ${DAYS} days: ${stats(times)} (${PASSES} passes, ${found} jobs found)`);
  out(`plan: ${scan(top)}; shared buffers hit+read ${Number(top['Shared Hit Blocks'] ?? 0) + Number(top['Shared Read Blocks'] ?? 0)}`);
} finally {
  await pool.end();
  await admin(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
}
