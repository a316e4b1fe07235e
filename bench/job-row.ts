/**
 * What Postgres does for one job's row on the hot path: admitted (reserve), started (mark running,
 * batched as the bot batches it), settled, delivered (mark delivered), for BENCH_JOBS jobs from
 * BENCH_CONCURRENCY members at once, on a table that already holds BENCH_ROWS finished jobs.
 * Prints WAL bytes per job (what Postgres writes and ships to replicas; the whole server's), the share of
 * the row's updates Postgres made in place (HOT: no index touched), the server's CPU per job
 * (its backends for these connections, from /proc) and the statements' medians.
 *
 *   npm run bench:job-row        (BENCH_JOBS=3000 BENCH_CONCURRENCY=8 BENCH_ROWS=100000
 *                                 BENCH_PAID_ROWS=0: that many of the finished jobs were paid
 *                                 attempts this month, as in a guild that runs on Replicate)
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { PgJobStore } from '../bot/store/jobs.js';
import { parseImagineOptions } from '../core/generation.js';
import { benchDatabase, pct } from './support.js';

const JOBS = Number(process.env.BENCH_JOBS ?? 3000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 8);
const ROWS = Number(process.env.BENCH_ROWS ?? 100_000);
const PAID_ROWS = Math.min(ROWS, Number(process.env.BENCH_PAID_ROWS ?? 0));
const out = (s: string) => process.stdout.write(`${s}\n`);

/**
 * CPU seconds the server spent on these connections (their backend processes, read from /proc, so
 * other databases on the machine do not count); null where /proc cannot tell (another OS, a
 * remote server).
 */
function backendCpuSeconds(pids: Iterable<number>): number | null {
  try {
    let total = 0;
    for (const pid of pids) {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // utime and stime (fields 14 and 15 of stat, counted here from the state field), in USER_HZ (100 on Linux).
      total += (Number(f[11]) + Number(f[12])) / 100;
    }
    return total;
  } catch {
    return null;
  }
}

const db = await benchDatabase('jobrow');
// As the bot opens them: admissions on one pool, the outbound side (settle, marks) on another.
const pool = new pg.Pool({ connectionString: db.url, max: CONCURRENCY });
const outbound = new pg.Pool({ connectionString: db.url, max: 3 });
let closed = false;
const backends = new Set<number>();
for (const p of [pool, outbound]) p.on('connect', (c) => backends.add((c as unknown as { processID: number }).processID));
try {
  await pool.query(
    `INSERT INTO jobs (guild_id, channel_id, user_id, kind, status, params, image_count, day, application_id, interaction_id,
                       created_at, finished_at, delivered_at, result)
     SELECT 'g', 'c', 'old' || (n % 500), 'txt2img', 'succeeded', '{"prompt":"x"}', 1, (now() - n * interval '30 seconds')::date,
            'a', 'old' || n, now() - n * interval '30 seconds', now() - n * interval '30 seconds', now() - n * interval '30 seconds', '{"runMs":5}'
     FROM generate_series(1, $1::int) AS n`,
    [ROWS],
  );
  // Paid attempts of this month (the seconds before now, so a run in a month's first minutes is the only exception).
  await pool.query(
    `INSERT INTO cost_ledger (job_id, attempt_no, guild_id, backend, outcome, seconds, cost_usd, created_at)
     SELECT id, 1, 'g', 'replicate', 'succeeded', 2, 0.003, now() - (row_number() OVER ()) * interval '1 millisecond'
     FROM jobs LIMIT $1::int`,
    [PAID_ROWS],
  );
  await pool.query('VACUUM ANALYZE jobs');
  await pool.query('VACUUM ANALYZE cost_ledger');
  const admit = new PgJobStore(pool);
  const settle = new PgJobStore(outbound);
  const request = parseImagineOptions({ prompt: 'a lighthouse at dusk, volumetric light, highly detailed' });
  const times = { reserve: [] as number[], settle: [] as number[] };
  const timed = async <T>(into: number[], f: () => Promise<T>): Promise<T> => {
    const t = performance.now();
    const r = await f();
    into.push(performance.now() - t);
    return r;
  };
  let next = 0;
  const oneJob = async (lane: number) => {
    const n = next++;
    const r = await timed(times.reserve, () =>
      admit.reserve({
        actor: { guildId: 'g', channelId: 'c', userId: `m${lane}`, channelNsfw: false },
        interaction: { applicationId: 'a', interactionId: `i${n}`, token: 'interaction-token' },
        request,
        day: new Date().toISOString().slice(0, 10),
        deploymentDailyLimit: 1_000_000,
        maxInFlight: 100,
        monthStart: `${new Date().toISOString().slice(0, 7)}-01`,
        deploymentMonthlyBudgetUsd: 5,
      }),
    );
    if (!r.ok) throw new Error(`not admitted: ${r.reason}`);
    return r.jobId;
  };
  const run = async (jobs: number) => {
    next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async (_, lane) => {
        while (next < jobs) {
          const jobId = await oneJob(lane);
          // The bot batches starts and deliveries; a burst's batch is a few jobs, one statement each way.
          await settle.markRunning([{ jobId, at: new Date() }]);
          await timed(times.settle, () =>
            settle.settle(jobId, {
              status: 'succeeded',
              result: {
                backend: 'a1111',
                seed: 1,
                width: 1024,
                height: 1024,
                imageKeys: [`img:${jobId}:0`],
                runMs: 900,
                costUsd: 0,
                attempts: [{ backend: 'a1111', outcome: 'succeeded', seconds: 0.9, costUsd: 0 }],
              },
            }),
          );
          await settle.markDelivered([{ jobId, messageId: '1234567890123456789' }]);
        }
      }),
    );
  };
  await run(Math.min(300, JOBS)); // warm: plans, caches, connections
  times.reserve.length = 0;
  times.settle.length = 0;
  const query = async <R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> => {
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      return (await c.query<R>(sql, params)).rows;
    } finally {
      await c.end();
    }
  };
  const stat = async () =>
    (
      await query<{ upd: string; hot: string; lsn: string }>(
        `SELECT n_tup_upd AS upd, n_tup_hot_upd AS hot, pg_current_wal_lsn()::text AS lsn FROM pg_stat_user_tables WHERE relname = 'jobs'`,
      )
    )[0]!;
  // Pages first written after a checkpoint go to the WAL whole: start both sides from one.
  await query('CHECKPOINT');
  const s0 = await stat();
  const cpu0 = backendCpuSeconds(backends);
  const t0 = performance.now();
  await run(JOBS);
  const secs = (performance.now() - t0) / 1000;
  const cpu1 = backendCpuSeconds(backends);
  // A backend reports its statistics for sure when it exits: close the bot's connections first.
  await Promise.all([pool.end(), outbound.end()]);
  closed = true;
  const s1 = await stat();
  const wal = Number((await query<{ d: string }>('SELECT pg_wal_lsn_diff($1, $2)::text AS d', [s1.lsn, s0.lsn]))[0]!.d);
  const upd = Number(s1.upd) - Number(s0.upd);
  const hot = Number(s1.hot) - Number(s0.hot);
  out(
    `bench/job-row: ${JOBS} jobs, ${CONCURRENCY} members at once, over ${ROWS} finished jobs (${PAID_ROWS} paid this month); ${(JOBS / secs).toFixed(0)} jobs/s`,
  );
  // The server's WAL position is shared by every database on it: on a busy machine this counts their writes too.
  out(`  WAL per job: ${(wal / JOBS / 1024).toFixed(2)} KiB (the whole server's; keep it otherwise quiet)`);
  // The warm-up's updates may be counted here too (statistics reach the shared view late): the share is what to read.
  out(`  row updates made in place (HOT, no index touched): ${((100 * hot) / Math.max(1, upd)).toFixed(0)} %`);
  out(`  postgres CPU per job: ${cpu0 === null || cpu1 === null ? 'n/a (no /proc)' : `${(((cpu1 - cpu0) * 1000) / JOBS).toFixed(3)} ms`}`);
  out(
    `  reserve p50 ${pct(times.reserve, 0.5).toFixed(2)} ms p99 ${pct(times.reserve, 0.99).toFixed(2)} ms; settle p50 ${pct(times.settle, 0.5).toFixed(2)} ms p99 ${pct(times.settle, 0.99).toFixed(2)} ms`,
  );
} finally {
  if (!closed) await Promise.all([pool.end(), outbound.end()]);
  await db.drop();
}
