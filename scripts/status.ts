/**
 * `npm run status` (in the image: `node dist/scripts/status.js`): the figures /metrics exposes, as
 * tables in the terminal, read straight from Redis (queue, backend reports) and Postgres (last 24 h
 * of jobs and cost). No Grafana needed. Reads `.env` like the bot and the worker.
 */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import pg from 'pg';
import { STATUS_STALE_MS } from '../core/eta.js';
import { readBackendStatus } from '../core/io/backend-status.js';
import { loadEnvFile } from '../core/io/env-file.js';
import { scrubUrlCredentials } from '../core/io/logger.js';
import { GENERATE_QUEUE } from '../core/io/queue.js';
import { OWN_BOX_STALE_MS } from '../core/routing.js';

loadEnvFile();

const redisUrl = process.env.REDIS_URL ?? 'redis://localhost:6379';
const dbUrl = process.env.DATABASE_URL || 'postgresql://postgres:postgres@localhost:5432/imagebot';
// A GPU box running a worker alone has no database: its status is the queue and the backends.
const workerOnly = !process.env.DATABASE_URL && !process.env.DISCORD_TOKEN;
const prefix = process.env.QUEUE_PREFIX ?? 'imagebot';
const out = (s = '') => process.stdout.write(`${s}\n`);

function table(rows: (string | number)[][]): void {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => String(r[c] ?? '').length)));
  rows.forEach((r, i) => {
    out(r.map((v, c) => String(v).padEnd(widths[c]!)).join('  '));
    if (i === 0) out(widths.map((w) => '-'.repeat(w)).join('  '));
  });
}

/** Queue counts and every worker's latest backend report, from Redis. */
async function queueAndBackends(): Promise<void> {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1, connectTimeout: 3000, enableOfflineQueue: false, lazyConnect: true });
  redis.on('error', () => undefined);
  await redis.connect();
  const queue = new Queue(GENERATE_QUEUE, { connection: redis, prefix });
  const counts = await queue.getJobCounts('waiting', 'prioritized', 'active', 'delayed', 'completed', 'failed');
  out('Queue');
  table([['state', 'jobs'], ...Object.entries(counts).map(([k, v]) => [k, v])]);

  const now = Date.now();
  const statuses = await readBackendStatus(redis, prefix);
  out('\nBackends (latest report per worker)');
  table([
    ['backend', 'worker', 'health', 'circuit', 'running', 'age', 'price'],
    ...statuses.map((s) => [
      s.backend,
      s.worker,
      s.healthy ? 'up' : `down: ${s.detail.slice(0, 40)}`,
      s.circuit,
      s.inFlight,
      `${Math.round((now - s.at) / 1000)} s${now - s.at > STATUS_STALE_MS ? ' (stale)' : ''}`,
      s.price,
    ]),
  ]);
  await queue.close();
  await guildSpaces(redis, now);
  redis.disconnect();
}

/** Each guild's own key space (linked boxes): its queue and its boxes' latest reports. */
async function guildSpaces(redis: Redis, now: number): Promise<void> {
  const spaces = new Set<string>();
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:g:*:backend-status`, 'COUNT', 500);
    for (const k of keys) spaces.add(k.slice(0, -':backend-status'.length));
    cursor = next;
  } while (cursor !== '0');
  out("\nGuilds' own boxes (by guild and box)");
  if (spaces.size === 0) {
    out('none reporting');
    return;
  }
  const rows: (string | number)[][] = [['guild', 'waiting', 'running', 'backend', 'box', 'worker', 'health', 'running here', 'age']];
  for (const space of [...spaces].sort()) {
    const guild = space.slice(`${prefix}:g:`.length);
    const queue = new Queue(GENERATE_QUEUE, { connection: redis, prefix: space });
    const c = await queue.getJobCounts('waiting', 'prioritized', 'active');
    await queue.close();
    for (const s of await readBackendStatus(redis, space)) {
      const age = now - s.at;
      rows.push([
        guild,
        (c.waiting ?? 0) + (c.prioritized ?? 0),
        c.active ?? 0,
        s.backend,
        s.box ?? '-',
        s.worker,
        s.healthy ? (s.circuit === 'open' ? 'circuit open' : 'up') : `down: ${s.detail.slice(0, 30)}`,
        s.inFlight,
        `${Math.round(age / 1000)} s${age >= OWN_BOX_STALE_MS ? ' (gone: jobs go to the shared queue)' : ''}`,
      ]);
    }
  }
  table(rows);
}

/** Jobs and backend attempts of the last 24 h, from Postgres. */
async function lastDay(): Promise<void> {
  const db = new pg.Client({ connectionString: dbUrl, connectionTimeoutMillis: 3000, options: '-c TimeZone=UTC' });
  await db.connect();
  const jobs = await db.query<{ status: string; n: string; images: string; cost: string }>(
    `SELECT status::text, count(*) AS n, COALESCE(sum(image_count), 0) AS images, COALESCE(sum(cost_usd), 0) AS cost
     FROM jobs WHERE created_at > now() - interval '24 hours' GROUP BY status ORDER BY status`,
  );
  out('\nJobs, last 24 h');
  table([['status', 'jobs', 'images', 'cost $'], ...jobs.rows.map((r) => [r.status, r.n, r.images, Number(r.cost).toFixed(4)])]);
  const backends = await db.query<{ backend: string; n: string; ok: string; p50: number | null; p95: number | null; cost: string }>(
    `SELECT backend, count(*) AS n, count(*) FILTER (WHERE outcome = 'succeeded') AS ok,
            percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds)::float8 AS p50,
            percentile_cont(0.95) WITHIN GROUP (ORDER BY seconds)::float8 AS p95, COALESCE(sum(cost_usd), 0) AS cost
     FROM cost_ledger WHERE created_at > now() - interval '24 hours' AND outcome <> 'skipped' GROUP BY backend ORDER BY backend`,
  );
  out('\nBackend attempts, last 24 h');
  table([
    ['backend', 'attempts', 'success', 'p50 s', 'p95 s', 'cost $'],
    ...backends.rows.map((r) => [
      r.backend,
      r.n,
      `${Math.round((Number(r.ok) / Number(r.n)) * 100)} %`,
      (r.p50 ?? 0).toFixed(1),
      (r.p95 ?? 0).toFixed(1),
      Number(r.cost).toFixed(4),
    ]),
  ]);
  const guilds = await db.query<{ guild_id: string; n: string; cost: string; own_usd: string }>(
    `SELECT guild_id, count(DISTINCT job_id) AS n, COALESCE(sum(cost_usd), 0) AS cost, COALESCE(sum(own_usd), 0) AS own_usd
     FROM cost_ledger WHERE created_at > now() - interval '24 hours' GROUP BY guild_id ORDER BY sum(cost_usd) DESC LIMIT 20`,
  );
  out("\nBy guild, last 24 h (operator cost; own boxes at the guild's own GPU-hour price, not in its budget)");
  table([
    ['guild', 'jobs', 'operator cost $', 'own boxes $'],
    ...guilds.rows.map((r) => [r.guild_id, r.n, Number(r.cost).toFixed(4), Number(r.own_usd).toFixed(4)]),
  ]);
  // Served by the partial index jobs_undeliverable_idx. Where no log channel is set, this is where
  // the owner learns that a channel refuses the bot's posts.
  const refused = await db.query<{ guild_id: string; channel_id: string; reason: string; n: string; last: Date }>(
    `SELECT guild_id, channel_id, COALESCE(delivery_error, '?') AS reason, count(*) AS n, max(undeliverable_at) AS last
     FROM jobs WHERE undeliverable_at > now() - interval '7 days'
     GROUP BY 1, 2, 3 ORDER BY last DESC LIMIT 20`,
  );
  out('\nResults Discord refused (given up and refunded), last 7 days');
  if (refused.rows.length === 0) out('none');
  else
    table([
      ['guild', 'channel', 'Discord answered', 'jobs', 'last'],
      ...refused.rows.map((r) => [r.guild_id, r.channel_id, r.reason, r.n, r.last.toISOString().slice(0, 16).replace('T', ' ')]),
    ]);
  await db.end();
}

let failed = false;
try {
  await queueAndBackends();
} catch (err) {
  failed = true;
  out(`Redis not reachable at ${scrubUrlCredentials(redisUrl)}: ${(err as Error).message}\n  → check REDIS_URL (npm run doctor)`);
}
if (workerOnly) out('\n(no DATABASE_URL here: jobs and cost are on the machine that runs the bot)');
else {
  try {
    await lastDay();
  } catch (err) {
    failed = true;
    out(
      `\nPostgres not reachable at ${scrubUrlCredentials(dbUrl)}: ${scrubUrlCredentials((err as Error).message)}\n  → check DATABASE_URL (npm run doctor)`,
    );
  }
}
process.exit(failed ? 1 : 0);
