/**
 * Where a sequential job's time goes, step by step: the fakes' clocks (interaction, acknowledgement,
 * the box's generation, the upload) and Redis MONITOR's (the queue's events, the worker's reads,
 * lease and stored images, the bot's read of them, the job's removal once settled), one clock for
 * all (the machine's). MONITOR slows Redis a little, so the total runs above bench:overhead's; the
 * steps are what to read. Prints the median time of each step from the interaction and from the
 * step before it. Not a test: figures only.
 *
 *   npm run bench:trace        (BENCH_SEQ=100 to change; BENCH_DIST=1 to run the compiled build;
 *                              BENCH_WARM=500 jobs first, so V8 has compiled the path as in a bot that has run a while)
 */
import { Redis } from 'ioredis';
import pg from 'pg';
import { startFakeDiscord } from '../tests/fakes/discord/server.js';
import { startInstantA1111 } from './instant-a1111.js';
import { benchDatabase, clearPrefix, pct, REDIS_URL, spawnReady, systemEnv } from './support.js';

const SEQ = Number(process.env.BENCH_SEQ ?? 100);
const WARM = Number(process.env.BENCH_WARM ?? 500);

/** The steps, in the order a job passes them, and how each is recognised. */
const STEPS = [
  'acknowledged (fake Discord got the first answer)',
  'queued (BullMQ "added" event)',
  'taken by the worker ("active" event)',
  "worker read the job's records (MGET)",
  'box lease granted',
  'box call started (fake box)',
  'box answered (fake box)',
  'images stored (SET)',
  'finished in BullMQ ("completed" event)',
  'bot read the images (MGET)',
  'settled and removed from BullMQ ("removed" event)',
  'result upload reached Discord',
] as const;

async function main(): Promise<void> {
  const out = (s: string) => process.stdout.write(`${s}\n`);
  const db = await benchDatabase('trace');
  const discord = await startFakeDiscord({ heartbeatIntervalMs: 41_250 });
  const a1111 = await startInstantA1111();
  const prefix = `bench:trace:${Date.now()}`;
  const env = {
    ...systemEnv({ discordApiUrl: discord.apiUrl, databaseUrl: db.url, prefix }),
    A1111_URL: a1111.boxUrl(1),
    DEFAULT_DAILY_IMAGES: '100000',
    MAX_QUEUED_PER_USER: '100',
    NSFW_CLASSIFIER: 'off',
  };
  const worker = await spawnReady('worker', env);
  const bot = await spawnReady('bot', env);
  const user = { id: '4000000000000000001', username: 'tracer' };
  const run = async (prompt: string) => {
    const i = await discord.slashCommand({ name: 'imagine', user, options: [{ name: 'prompt', type: 3, value: prompt }] });
    const upload = await discord.waitFor(
      () =>
        discord.requests.find(
          (r) => r.method === 'PATCH' && r.path.includes(`/${i.token}/`) && r.files.some((f) => f.filename.startsWith('image-')),
        ),
      30_000,
    );
    return { i, upload };
  };
  for (let n = 0; n < WARM; n++) await run(`warm ${n}`);

  // Every command Redis runs, with its time (µs), the Lua scripts' own commands included.
  const seen: { at: number; args: string[] }[] = [];
  // The connection MONITOR is asked on stays open beside the monitor's own: both are closed at the
  // end, or the bench never exits (and keeps the suite lock).
  const monitorBase = new Redis(REDIS_URL);
  const monitor = await monitorBase.monitor();
  monitor.on('monitor', (time: string, args: string[]) => seen.push({ at: Number(time) * 1000, args }));
  const sql = new pg.Client({ connectionString: db.url });
  await sql.connect();
  const epoch = performance.timeOrigin;
  const rows: number[][] = [];
  for (let n = 0; n < SEQ; n++) {
    const spans = a1111.spans.length;
    const { i, upload } = await run(`trace ${n}`);
    const jobId = (await sql.query<{ id: string }>('SELECT id::text FROM jobs WHERE interaction_id = $1', [i.id])).rows[0]?.id;
    const span = a1111.spans[spans];
    if (!jobId || !span) continue;
    const first = (match: (args: string[]) => boolean) => seen.find((c) => match(c.args))?.at ?? Number.NaN;
    const event = (name: string) => first((a) => a[0] === 'XADD' && a.includes(name) && a.includes(jobId));
    const ack = (await i.waitForCallback()).at;
    rows.push(
      [
        ack,
        event('added'),
        event('active'),
        first((a) => a[0] === 'mget' && a.some((k) => k.endsWith(`failure:${jobId}`))),
        first((a) => a[0] === 'SET' && a[1]?.endsWith(':lease') === true && String(a[2]).includes(jobId)),
        epoch + span[0],
        epoch + span[1],
        first((a) => a[0] === 'set' && a[1]?.includes(`img:${jobId}`) === true),
        event('completed'),
        first((a) => a[0] === 'mget' && a.some((k) => k.includes(`img:${jobId}`))),
        event('removed'),
        upload.at,
      ].map((t) => t - i.createdAt),
    );
  }
  await monitor.disconnect();
  monitorBase.disconnect();
  await sql.end();

  out(
    `bench/trace: node ${process.version}, ${process.env.BENCH_DIST ? 'compiled dist/' : 'tsx from source'}, ${rows.length} sequential jobs after ${WARM} to warm up, 1 instant box`,
  );
  out('  step                                                   from the interaction   from the step before (p50, ms)');
  STEPS.forEach((name, k) => {
    const at = rows.map((r) => r[k]!).filter(Number.isFinite);
    const gap = rows.map((r) => r[k]! - (k === 0 ? 0 : r[k - 1]!)).filter(Number.isFinite);
    out(`  ${name.padEnd(55)} ${pct(at, 0.5).toFixed(2).padStart(8)}             ${pct(gap, 0.5).toFixed(2).padStart(8)}`);
  });

  bot.child.kill('SIGTERM');
  worker.child.kill('SIGTERM');
  await Promise.all([new Promise((r) => bot.child.once('exit', r)), new Promise((r) => worker.child.once('exit', r))]);
  await clearPrefix(prefix);
  await discord.close();
  await a1111.close();
  await db.drop();
}

await main();
