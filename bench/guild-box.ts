/**
 * A guild's own box coming online: from starting the guild's worker (WORKER_GUILD_ID, its own fake
 * A1111) to the first job landing on that box, while the guild's members keep sending `/imagine`
 * (one every BENCH_EVERY_MS, served by the shared box meanwhile). Through the real bot and worker
 * processes. Printed per run: from the process start (includes Node and tsx booting), and from its
 * "worker ready" line (its first status report and the bot's next admission seeing it).
 *
 *   npm run bench:guild-box        (BENCH_RUNS=5, BENCH_EVERY_MS=200)
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { Redis } from 'ioredis';
import pg from 'pg';
import { applyMigrations, ensureDatabase } from '../prisma/migrate.js';
import { startFakeA1111 } from '../tests/fakes/a1111.js';
import { startFakeDiscord } from '../tests/fakes/discord/server.js';
import type { FakeInteraction } from '../tests/fakes/discord/types.js';
import { emptyCwd, sourceEntryArgs } from '../tests/setup/processes.js';

const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const PG_ADMIN = process.env.BENCH_PG_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const EVERY_MS = Number(process.env.BENCH_EVERY_MS ?? 200);
const GUILD = '2222222222222222222';
const out = (s: string) => process.stdout.write(`${s}\n`);
const f = (ms: number) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(0)} ms`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts bot/main.ts or worker/main.ts; resolves with the process and when its ready line came. */
async function spawnProc(which: 'bot' | 'worker', env: Record<string, string>): Promise<{ child: ChildProcess; readyAt: number }> {
  // An empty working directory: a developer's .env must not reach the measured processes.
  const child = spawn(process.execPath, sourceEntryArgs(`${which}/main.ts`), {
    cwd: emptyCwd(),
    env: { ...process.env, ...env, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  process.once('exit', () => child.kill('SIGKILL'));
  const readyAt = await new Promise<number>((resolve, reject) => {
    let buf = '';
    const onData = (c: Buffer) => {
      buf += c.toString();
      if (!buf.includes(`"${which} ready"`)) return;
      child.stdout!.off('data', onData);
      resolve(Date.now());
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${which} exited ${code}`)));
  });
  child.stdout!.resume();
  return { child, readyAt };
}

const stamp = Date.now();
const dbName = `imagebot_bench_guild_box_${stamp}`;
const dbUrl = new URL(PG_ADMIN);
dbUrl.pathname = `/${dbName}`;
await ensureDatabase(dbUrl.toString());
await applyMigrations(dbUrl.toString());
const discord = await startFakeDiscord({ heartbeatIntervalMs: 41_250 });
const shared = await startFakeA1111();
const prefix = `bench-guild-box:${stamp}`;
const env = {
  DISCORD_TOKEN: 'fake-token',
  DISCORD_APP_ID: '1111111111111111111',
  DISCORD_API_URL: discord.apiUrl,
  DATABASE_URL: dbUrl.toString(),
  REDIS_URL,
  QUEUE_PREFIX: prefix,
  A1111_URL: shared.url,
  DEFAULT_DAILY_IMAGES: '100000',
  NSFW_CLASSIFIER: 'off',
};
const procs = [(await spawnProc('worker', env)).child, (await spawnProc('bot', env)).child];

let sent = 0;
const pending: FakeInteraction[] = [];
let streaming = true;
/** The guild's members keep asking, each a different member (no one hits the in-flight cap). */
const stream = (async () => {
  while (streaming) {
    const n = sent++;
    pending.push(
      await discord.slashCommand({
        name: 'imagine',
        guildId: GUILD,
        user: { id: String(4300000000000000000n + BigInt(n)), username: `m${n}` },
        options: [
          { name: 'prompt', type: 3, value: `stream ${n}` },
          { name: 'steps', type: 4, value: 2 },
        ],
      }),
    );
    await sleep(EVERY_MS);
  }
})();

const fromStart: number[] = [];
const fromReady: number[] = [];
for (let run = 0; run < RUNS; run++) {
  const own = await startFakeA1111();
  await sleep(1000); // the shared box serves the stream meanwhile
  const t0 = Date.now();
  const worker = await spawnProc('worker', { ...env, WORKER_GUILD_ID: GUILD, A1111_URL: own.url });
  const deadline = Date.now() + 60_000;
  while (!own.requests.some((r) => r.path === '/sdapi/v1/txt2img') && Date.now() < deadline) await sleep(5);
  const first = own.requests.find((r) => r.path === '/sdapi/v1/txt2img');
  fromStart.push(first ? first.at - t0 : NaN);
  fromReady.push(first ? first.at - worker.readyAt : NaN);
  // SIGTERM: the worker hands back what it holds and withdraws its reports, so the next run starts with no own box.
  worker.child.kill('SIGTERM');
  await once(worker.child, 'exit');
  await own.close();
}
streaming = false;
await stream;
// Everything sent was delivered (nothing lost in the handoffs between runs).
const delivered = await Promise.all(
  pending.map((i) =>
    discord
      .waitFor(() => (i.original()?.attachments.some((a) => a.filename.startsWith('image-')) ? true : undefined), 60_000)
      .then(
        () => true,
        () => false,
      ),
  ),
);
for (const p of procs) p.kill('SIGKILL');
await Promise.all(procs.map((p) => once(p, 'exit')));
await discord.close();
await shared.close();
const r = new Redis(REDIS_URL);
let cursor = '0';
do {
  const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
  if (keys.length) await r.unlink(...keys);
  cursor = next;
} while (cursor !== '0');
await r.quit();
const admin = new pg.Client({ connectionString: PG_ADMIN });
await admin.connect();
await admin.query(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`);
await admin.end();

out(`bench/guild-box: node ${process.version}, ${RUNS} runs, a member's /imagine every ${EVERY_MS} ms in the guild`);
out("time until the first job lands on a guild's own box that comes online");
out(`  from starting its worker process (boot included): median ${f(median(fromStart))}, max ${f(Math.max(...fromStart))}`);
out(`  from its "worker ready" line:                     median ${f(median(fromReady))}, max ${f(Math.max(...fromReady))}`);
out(`  every run (from start / from ready): ${fromStart.map((t, i) => `${f(t)} / ${f(fromReady[i]!)}`).join(', ')}`);
out(`  jobs sent ${pending.length}, delivered ${delivered.filter(Boolean).length}`);
process.exit(0);
