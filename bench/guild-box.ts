/**
 * A guild's own box coming online: from starting the guild's worker (WORKER_GUILD_ID, its own fake
 * A1111) to the first job landing on that box, while the guild's members keep sending `/imagine`
 * (one every BENCH_EVERY_MS, served by the shared box meanwhile). Through the real bot and worker
 * processes. Printed per run: from the process start (includes Node and tsx booting), and from its
 * "worker ready" line (its first status report and the bot's next admission seeing it).
 *
 *   npm run bench:guild-box        (BENCH_RUNS=5, BENCH_EVERY_MS=200)
 */
import { once } from 'node:events';
import { startFakeA1111 } from '../tests/fakes/a1111.js';
import { startFakeDiscord } from '../tests/fakes/discord/server.js';
import type { FakeInteraction } from '../tests/fakes/discord/types.js';
import { benchDatabase, clearPrefix, spawnReady, systemEnv } from './support.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const EVERY_MS = Number(process.env.BENCH_EVERY_MS ?? 200);
const GUILD = '2222222222222222222';
const out = (s: string) => process.stdout.write(`${s}\n`);
const f = (ms: number) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(0)} ms`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const stamp = Date.now();
const db = await benchDatabase('guild_box');
const discord = await startFakeDiscord({ heartbeatIntervalMs: 41_250 });
const shared = await startFakeA1111();
const prefix = `bench-guild-box:${stamp}`;
const env = {
  ...systemEnv({ discordApiUrl: discord.apiUrl, databaseUrl: db.url, prefix }),
  A1111_URL: shared.url,
  DEFAULT_DAILY_IMAGES: '100000',
  NSFW_CLASSIFIER: 'off',
};
const procs = [(await spawnReady('worker', env)).child, (await spawnReady('bot', env)).child];

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
  const worker = await spawnReady('worker', { ...env, WORKER_GUILD_ID: GUILD, A1111_URL: own.url });
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
await clearPrefix(prefix);
await db.drop();

out(`bench/guild-box: node ${process.version}, ${RUNS} runs, a member's /imagine every ${EVERY_MS} ms in the guild`);
out("time until the first job lands on a guild's own box that comes online");
out(`  from starting its worker process (boot included): median ${f(median(fromStart))}, max ${f(Math.max(...fromStart))}`);
out(`  from its "worker ready" line:                     median ${f(median(fromReady))}, max ${f(Math.max(...fromReady))}`);
out(`  every run (from start / from ready): ${fromStart.map((t, i) => `${f(t)} / ${f(fromReady[i]!)}`).join(', ')}`);
out(`  jobs sent ${pending.length}, delivered ${delivered.filter(Boolean).length}`);
process.exit(0);
