/**
 * What the system adds per job: interaction → queue → worker → instant fake backend → delivery,
 * on the real Postgres and Redis, the real bot (in this process) and worker (a child process).
 * Prints p50/p99 of added latency and of the acknowledgement, and jobs/s, each beside plain BullMQ
 * on the same Redis in the same run (bench/plain-bullmq.ts), and the bot's idle memory. Not a test:
 * figures only.
 *
 *   npm run bench:overhead            (BENCH_JOBS=1000 BENCH_SEQ=200 BENCH_BOXES=1,8 to change;
 *                                      BENCH_PROF=/tmp/prof for CPU profiles of bot and worker;
 *                                      BENCH_DIST=1 to run the compiled build; BENCH_DISCORD_MS=50
 *                                      for Discord's answers to take as long as over the internet)
 */
import { once } from 'node:events';
import { readdir, readFile } from 'node:fs/promises';
import { Redis } from 'ioredis';
import { loadConfig, workerConfigSchema } from '../core/config.js';
import { startFakeDiscord } from '../tests/fakes/discord/server.js';
import type { FakeInteraction } from '../tests/fakes/discord/types.js';
import { startInstantA1111 } from './instant-a1111.js';
import { measurePlainBullmq } from './plain-bullmq.js';
import { benchDatabase, clearPrefix, deployedNodeFlags, REDIS_URL, spawnReady, systemEnv } from './support.js';

const SEQ = Number(process.env.BENCH_SEQ ?? 200);
const JOBS = Number(process.env.BENCH_JOBS ?? 1000);
const BOXES = (process.env.BENCH_BOXES ?? '1,8').split(',').map(Number);
const WARM = Number(process.env.BENCH_WARM ?? 500);
/** The first jobs after start, one at a time: what a member meets right after a restart. */
const COLD = 20;

function pct(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}
const f = (n: number) => n.toFixed(1);

/** CPU time (user + system) of a process so far, in ms (Linux /proc; clock ticks of 10 ms). */
async function cpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11] ?? 0) + Number(fields[12] ?? 0)) * 10;
}

/** CPU time of every process with this command name (Postgres runs one per connection), in ms. */
async function cpuMsOf(comm: string): Promise<number> {
  let total = 0;
  for (const pid of (await readdir('/proc')).filter((d) => /^\d+$/.test(d))) {
    const name = await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '');
    if (name.trim() === comm) total += await cpuMs(Number(pid));
  }
  return total;
}

/** Where the CPU went, per process: the bot, the worker, Redis, Postgres and this process (the fakes). */
async function cpuSnapshot(bot: number, worker: number, redis: Redis) {
  const info = await redis.info('cpu');
  const redisS = ['used_cpu_sys', 'used_cpu_user'].reduce((s, k) => s + Number(new RegExp(`${k}:([\\d.]+)`).exec(info)?.[1] ?? 0), 0);
  const self = process.cpuUsage();
  return {
    bot: await cpuMs(bot),
    worker: await cpuMs(worker),
    redis: redisS * 1000,
    postgres: await cpuMsOf('postgres'),
    fakes: (self.user + self.system) / 1000,
  };
}

/** Resident memory of a process (Linux), in MB: all of it, its own (anonymous) pages, and mapped files (mostly the node binary). */
async function rssMb(pid: number): Promise<{ rss: number; anon: number; file: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) / 1024;
  return { rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile') };
}

async function main(): Promise<void> {
  const out = (s: string) => process.stdout.write(`${s}\n`);
  const stamp = `${Date.now()}`;
  const db = await benchDatabase('overhead');
  // Discord's real heartbeat interval: the fake's 1 s test default makes a busy bot look like a zombie connection.
  // BENCH_DISCORD_MS: Discord's answers take this long to come back, as over the internet (0: loopback).
  const discord = await startFakeDiscord({ heartbeatIntervalMs: 41_250, answerDelayMs: Number(process.env.BENCH_DISCORD_MS ?? 0) });
  const a1111 = await startInstantA1111();
  const users = Array.from({ length: 50 }, (_, i) => ({ id: String(4000000000000000000n + BigInt(i)), username: `u${i}` }));

  out(
    `bench/overhead: node ${process.version}, ${process.env.BENCH_DIST ? 'compiled dist/' : 'tsx from source'}, ${SEQ} sequential jobs, ${JOBS} burst jobs per configuration${process.env.BENCH_DISCORD_MS ? `, Discord answers after ${process.env.BENCH_DISCORD_MS} ms` : ''}`,
  );
  for (const boxes of BOXES) {
    const prefix = `bench:${stamp}:${boxes}`;
    const env: Record<string, string> = {
      ...systemEnv({ discordApiUrl: discord.apiUrl, databaseUrl: db.url, prefix }),
      // Distinct boxes (each its own lease and one-at-a-time lock): the same URL twice is one box.
      A1111_URL: Array.from({ length: boxes }, (_, n) => a1111.boxUrl(n + 1)).join(','),
      // The worker's own default (one slot per box), as deployed; BENCH_CONCURRENCY to try another.
      ...(process.env.BENCH_CONCURRENCY ? { WORKER_CONCURRENCY: process.env.BENCH_CONCURRENCY } : {}),
      DEFAULT_DAILY_IMAGES: '100000',
      MAX_QUEUED_PER_USER: '100',
      LOG_LEVEL: 'warn',
      // The classifier's cost per image is measured on its own in bench/classifier.ts.
      NSFW_CLASSIFIER: 'off',
    };
    const concurrency = loadConfig(workerConfigSchema, { ...process.env, ...env }).WORKER_CONCURRENCY;
    // The floor first, on a quiet machine: what plain BullMQ costs per job at the same concurrency.
    const plain = await measurePlainBullmq({
      redisUrl: REDIS_URL,
      prefix: `${prefix}:plain`,
      concurrency,
      seq: SEQ,
      jobs: JOBS,
      warm: WARM,
    });
    // Bot and worker run as their own processes, as deployed; the fakes and the clock stay here.
    // They log their ready line at info; their per-job lines are read and dropped.
    const { child: worker } = await spawnReady('worker', env);
    // The bot's own /metrics: its acknowledgement histogram separates its work from the fakes'.
    const { child: bot } = await spawnReady('bot', { ...env, HTTP_PORT: String(19_000 + boxes) }, { deployedFlags: true });
    // Idle memory: RSS once start-up work (gateway, first sweep) has settled, before any interaction.
    await new Promise((r) => setTimeout(r, 3000));
    const idleRss = await rssMb(bot.pid!);

    // Index result uploads by token incrementally: rescanning every request on each poll would
    // make the benchmark itself the bottleneck.
    const finals = new Map<string, number>();
    // Admitted too slowly and then refused ("nothing was queued"): acknowledged, but no result will
    // come. The member is told in a private follow-up (POST) once the public deferral is deleted.
    const refusedLate = new Set<string>();
    let scanned = 0;
    const finalAt = (i: FakeInteraction) => {
      for (; scanned < discord.requests.length; scanned++) {
        const r = discord.requests[scanned]!;
        if (r.status === 0) break; // still being handled
        if (!r.path.startsWith('/webhooks/') || (r.method !== 'PATCH' && r.method !== 'POST')) continue;
        const token = r.path.split('/')[3];
        if (!token) continue;
        if (r.method === 'PATCH' && r.files.some((x) => x.filename.startsWith('image-'))) {
          if (!finals.has(token)) finals.set(token, r.at);
        } else if (String((r.json as { content?: unknown } | undefined)?.content ?? '').includes('nothing was queued'))
          refusedLate.add(token);
      }
      return finals.get(i.token);
    };
    const waitAll = (list: FakeInteraction[], timeoutMs: number) =>
      discord.waitFor(() => (list.every((i) => finalAt(i) !== undefined || refusedLate.has(i.token)) ? true : undefined), timeoutMs);

    // Cold: the first jobs after start, one at a time (connections opened, nothing compiled yet).
    const cold: number[] = [];
    for (let n = 0; n < COLD; n++) {
      const i = await discord.slashCommand({
        name: 'imagine',
        user: users[n % 50],
        options: [{ name: 'prompt', type: 3, value: `cold ${n}` }],
      });
      await waitAll([i], 30_000);
      cold.push(finalAt(i)! - i.createdAt);
    }
    // Warm-up: a burst and as many sequential jobs, so both paths are compiled as in a bot that has run for a while.
    const warmBurst: FakeInteraction[] = [];
    for (let n = 0; n < WARM; n++)
      warmBurst.push(
        await discord.slashCommand({ name: 'imagine', user: users[n % 50], options: [{ name: 'prompt', type: 3, value: `warm ${n}` }] }),
      );
    const warmAcks = await Promise.all(warmBurst.map((i) => i.waitForCallback(15_000).catch(() => undefined)));
    // Only admitted jobs post a result (a refusal is a private first answer, flag 64).
    await waitAll(
      warmBurst.filter((_, n) => {
        const cb = warmAcks[n];
        return cb && (cb.type === 5 || (cb.type === 4 && ((cb.data?.flags ?? 0) & 64) === 0));
      }),
      600_000,
    );
    for (let n = 0; n < WARM; n++) {
      const i = await discord.slashCommand({
        name: 'imagine',
        user: users[n % 50],
        options: [{ name: 'prompt', type: 3, value: `warm seq ${n}` }],
      });
      await waitAll([i], 30_000);
    }

    const added: number[] = [];
    const acks: number[] = [];
    // Where the sequential job's time goes, from the fakes' clocks: ack → box call starts → box answers → result uploaded.
    const toBox: number[] = [];
    const fromBox: number[] = [];
    const epoch = performance.timeOrigin;
    const probe = new Redis(REDIS_URL);
    const cpuSeqBefore = await cpuSnapshot(bot.pid!, worker.pid!, probe);
    for (let n = 0; n < SEQ; n++) {
      const spansBefore = a1111.spans.length;
      const i = await discord.slashCommand({
        name: 'imagine',
        user: users[n % 50],
        options: [{ name: 'prompt', type: 3, value: `seq ${n}` }],
      });
      await waitAll([i], 30_000);
      const ackAt = (await i.waitForCallback()).at;
      added.push(finalAt(i)! - i.createdAt);
      acks.push(ackAt - i.createdAt);
      const span = a1111.spans[spansBefore];
      if (span) {
        toBox.push(epoch + span[0] - ackAt);
        fromBox.push(finalAt(i)! - (epoch + span[1]));
      }
    }

    const botAcks = async () => {
      const text = await (await fetch(`http://127.0.0.1:${19_000 + boxes}/metrics`)).text();
      const le = new Map<string, number>();
      for (const m of text.matchAll(/^imagebot_interaction_ack_seconds_bucket\{le="([^"]+)"[^}]*\} (\d+)/gm)) le.set(m[1]!, Number(m[2]));
      return le;
    };
    const cpuSeqAfter = await cpuSnapshot(bot.pid!, worker.pid!, probe);
    const acksBefore = await botAcks();
    const cpuBefore = await cpuSnapshot(bot.pid!, worker.pid!, probe);
    const burst: FakeInteraction[] = [];
    const requestsBefore = discord.requests.length;
    const t0 = Date.now();
    for (let n = 0; n < JOBS; n++) {
      burst.push(
        await discord.slashCommand({ name: 'imagine', user: users[n % 50], options: [{ name: 'prompt', type: 3, value: `burst ${n}` }] }),
      );
    }
    const acked = await Promise.allSettled(
      burst.map(async (i) => {
        const cb = await i.waitForCallback(15_000);
        // Admitted: deferred (5), or answered in public with the job's place (4); a refusal is private (flag 64).
        return { ms: cb.at - i.createdAt, admitted: cb.type === 5 || (cb.type === 4 && ((cb.data?.flags ?? 0) & 64) === 0) };
      }),
    );
    const burstAcks = acked.flatMap((r) => (r.status === 'fulfilled' ? [r.value.ms] : []));
    const missed = acked.length - burstAcks.length;
    const delivered = burst.filter((_, n) => {
      const r = acked[n]!;
      return r.status === 'fulfilled' && r.value.admitted;
    });
    const refused = burstAcks.length - delivered.length;
    await waitAll(delivered, 600_000);
    const acksAfter = await botAcks();
    const cpuAfter = await cpuSnapshot(bot.pid!, worker.pid!, probe);
    await probe.quit();
    // Idle again after the burst: what traffic leaves behind. The bot looks at its load every 10 s and
    // gives memory back in the first quiet window after a busy one (core/io/memory.ts): 25 s covers that.
    await new Promise((r) => setTimeout(r, 25_000));
    const afterRss = await rssMb(bot.pid!);
    const inBot = (le: string) => (acksAfter.get(le) ?? 0) - (acksBefore.get(le) ?? 0);
    const posted = delivered.filter((i) => finalAt(i) !== undefined);
    const last = Math.max(...posted.map((i) => finalAt(i)!));
    const jobsPerS = posted.length / ((last - t0) / 1000);

    out(`\n[${boxes} box${boxes > 1 ? 'es' : ''}, worker concurrency ${concurrency}]`);
    out(`  cold: the first ${COLD} jobs after start, one at a time: p50 ${f(pct(cold, 50))} ms  max ${f(Math.max(...cold))} ms`);
    out(
      `  added latency per job (sequential, backend ~0 ms, after ${WARM} + ${WARM} warm-up jobs): p50 ${f(pct(added, 50))} ms  p99 ${f(pct(added, 99))} ms`,
    );
    // What a job costs when nothing shares its wake-ups: each process is woken for it alone, where a
    // burst's jobs share them (compare the burst's line). The fakes' share includes this process polling for the upload.
    const seqCpu = (k: keyof typeof cpuSeqAfter) => (cpuSeqAfter[k] - cpuSeqBefore[k]) / SEQ;
    const seqKeys = ['bot', 'worker', 'redis', 'postgres', 'fakes'] as const;
    out(
      `    CPU per sequential job (ms): ${seqKeys.map((k) => `${k} ${f(seqCpu(k))}`).join(', ')}; sum ${f(seqKeys.reduce((s, k) => s + seqCpu(k), 0))}`,
    );
    out(`  acknowledgement (interaction sent → first answer received): p50 ${f(pct(acks, 50))} ms  p99 ${f(pct(acks, 99))} ms`);
    out(`    of which: ack → box call starts p50 ${f(pct(toBox, 50))} ms; box answered → result uploaded p50 ${f(pct(fromBox, 50))} ms`);
    out(
      `  acknowledgement under the ${JOBS}-job burst: p50 ${f(pct(burstAcks, 50))} ms  p99 ${f(pct(burstAcks, 99))} ms  (missed the 3 s window: ${missed}; refused, e.g. the database too slow: ${refused} at once, ${delivered.length - posted.length} after it)`,
    );
    out(
      `    inside the bot (event received → Discord had the first answer): ≤0.25 s ${inBot('0.25')}, ≤1 s ${inBot('1')}, ≤2 s ${inBot('2')}, ≤3 s ${inBot('3')} of ${inBot('+Inf')}`,
    );
    out(`  throughput: ${posted.length} jobs in ${f((last - t0) / 1000)} s = ${f(jobsPerS)} jobs/s (backend calls ${a1111.calls})`);
    out(
      `  plain BullMQ, same Redis, no-op job in a worker process at concurrency ${concurrency}: p50 ${f(pct(plain.latency, 50))} ms  p99 ${f(pct(plain.latency, 99))} ms, ${f(plain.jobsPerS)} jobs/s`,
    );
    out(
      `    ours over plain: +${f(pct(added, 50) - pct(plain.latency, 50))} ms p50 per job, ${(jobsPerS / plain.jobsPerS).toFixed(3)} × the throughput`,
    );
    // What each job asked of Discord during the burst: every call is work for the bot (and the fake).
    const kinds = new Map<string, number>();
    for (const r of discord.requests.slice(requestsBefore)) {
      const kind = r.path.endsWith('/callback')
        ? 'first answers'
        : r.files.length > 0
          ? 'uploads'
          : r.method === 'PATCH'
            ? 'edits'
            : `${r.method} other`;
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    }
    out(
      `  Discord requests per posted job during the burst: ${[...kinds].map(([k, v]) => `${k} ${(v / posted.length).toFixed(2)}`).join(', ')}`,
    );
    const perJob = (k: keyof typeof cpuAfter) => (cpuAfter[k] - cpuBefore[k]) / posted.length;
    const parts = (['bot', 'worker', 'redis', 'postgres', 'fakes'] as const).map((k) => `${k} ${f(perJob(k))}`);
    const sum = (['bot', 'worker', 'redis', 'postgres', 'fakes'] as const).reduce((s, k) => s + perJob(k), 0);
    out(`  CPU per job during the burst (ms): ${parts.join(', ')}; sum ${f(sum)} on 2 cores`);
    out(
      `  bot idle RSS 3 s after ready, no traffic: ${f(idleRss.rss)} MB (own pages ${f(idleRss.anon)} MB, mapped files such as the node binary ${f(idleRss.file)} MB; node flags: ${(await deployedNodeFlags()).join(' ') || 'none'})`,
    );
    out(`  bot RSS idle again 25 s after the burst: ${f(afterRss.rss)} MB (own pages ${f(afterRss.anon)} MB)`);

    bot.kill('SIGTERM');
    worker.kill('SIGTERM');
    await Promise.all([once(bot, 'exit'), once(worker, 'exit')]);
    await clearPrefix(prefix);
  }
  await discord.close();
  await a1111.close();
  await db.drop();
}

await main();
