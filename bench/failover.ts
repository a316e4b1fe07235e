/**
 * Failover: time until the fallback backend (a Hugging Face endpoint fake) receives a job when the
 * GPU box (a) refuses connections, (b) accepts the job but never answers it, (c) stops answering
 * altogether (a frozen process), (d) dies mid-job: through the real worker and queue, jobs one after
 * another, the first (which finds the failure out) apart from the steady state after it; beside it, a
 * naive chain that tries each provider in turn with a 30 s timeout. Then the hung box's steady state
 * from the member's command: bot and two worker processes, `/imagine` to the cloud, per job.
 *
 *   npm run bench:failover        (BENCH_JOBS=6 jobs per scenario, BENCH_COMMANDS=8; production timeouts)
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { QueueEvents } from 'bullmq';
import { loadConfig, workerConfigSchema } from '../core/config.js';
import { type JobPayload, parseImagineOptions } from '../core/generation.js';
import { createLogger } from '../core/io/logger.js';
import { createGenerateQueue, createRedis, GENERATE_QUEUE } from '../core/io/queue.js';
import { type FakeA1111Mode, startFakeA1111 } from '../tests/fakes/a1111.js';
import { startFakeDiscord } from '../tests/fakes/discord/server.js';
import { startFakeHFEndpoint } from '../tests/fakes/huggingface.js';
import { startWorker } from '../worker/main.js';
import { benchDatabase, clearPrefix, REDIS_URL, spawnReady, systemEnv } from './support.js';

const JOBS = Number(process.env.BENCH_JOBS ?? 6);
const COMMANDS = Number(process.env.BENCH_COMMANDS ?? 8);
const NAIVE_TIMEOUT_MS = 30_000;
const out = (s: string) => process.stdout.write(`${s}\n`);
const f = (ms: number) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(0)} ms`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

type Scenario = { name: string; mode: FakeA1111Mode | 'refused' };
const SCENARIOS: Scenario[] = [
  { name: '(a) box refuses connections', mode: 'refused' },
  { name: '(b) box accepts the job and never answers it (/progress idle)', mode: 'hang' },
  { name: '(c) box stops answering altogether (frozen process)', mode: 'freeze' },
  { name: '(d) box dies mid-job', mode: 'die-mid-job' },
];

async function ours(s: Scenario): Promise<number[]> {
  const box = await startFakeA1111({ stepDelayMs: 100, mode: s.mode === 'refused' ? 'ok' : s.mode });
  const hf = await startFakeHFEndpoint();
  const prefix = `bench-failover:${randomUUID()}`;
  const config = loadConfig(workerConfigSchema, {
    ...process.env,
    REDIS_URL,
    QUEUE_PREFIX: prefix,
    BACKENDS: 'a1111,huggingface',
    A1111_URL: s.mode === 'refused' ? 'http://127.0.0.1:9' : box.url,
    HF_ENDPOINT_URL: hf.url,
    HF_TOKEN: 'hf_bench',
    LOG_LEVEL: 'silent',
    NSFW_CLASSIFIER: 'off',
  });
  const worker = await startWorker(config, createLogger({ level: 'silent' }));
  const producer = createRedis(REDIS_URL, 'producer');
  const queue = createGenerateQueue(producer, prefix);
  const events = new QueueEvents(GENERATE_QUEUE, { connection: createRedis(REDIS_URL, 'blocking'), prefix });
  await events.waitUntilReady();
  const times: number[] = [];
  for (let n = 0; n < JOBS; n++) {
    const before = hf.requests.length;
    const jobId = randomUUID();
    const request = parseImagineOptions({ prompt: `failover ${n}`, steps: 20 });
    const payload: JobPayload = {
      v: 1,
      jobId,
      guildId: null,
      request: { ...request, width: 512, height: 512 },
      paidAllowed: true,
      nsfwAllowed: true,
    };
    const t0 = Date.now();
    const job = await queue.add('txt2img', payload, { jobId });
    await job.waitUntilFinished(events, 120_000);
    const hit = hf.requests[before];
    times.push(hit ? hit.at - t0 : NaN);
  }
  await worker.stop();
  await events.close();
  await queue.obliterate({ force: true });
  await queue.close();
  await producer.quit();
  await box.close();
  await hf.close();
  await clearPrefix(prefix);
  return times;
}

/** The pattern most bots use: POST to each provider in turn, each with a 30 s timeout. */
async function naive(s: Scenario): Promise<number> {
  const box = await startFakeA1111({ stepDelayMs: 100, mode: s.mode === 'refused' ? 'ok' : s.mode });
  const hf = await startFakeHFEndpoint();
  const chain = [
    {
      url: `${s.mode === 'refused' ? 'http://127.0.0.1:9' : box.url}/sdapi/v1/txt2img`,
      body: { prompt: 'x', steps: 20, width: 512, height: 512 },
    },
    { url: hf.url, body: { inputs: 'x', parameters: { width: 512, height: 512 } } },
  ];
  const t0 = Date.now();
  for (const p of chain) {
    try {
      const res = await fetch(p.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(p.body),
        signal: AbortSignal.timeout(NAIVE_TIMEOUT_MS),
      });
      if (res.ok) {
        await res.arrayBuffer();
        break;
      }
    } catch {
      // next provider
    }
  }
  const at = hf.requests[0]?.at;
  await box.close();
  await hf.close();
  return at ? at - t0 : NaN;
}

/** A frozen box behind the whole system: from each `/imagine` to the cloud receiving its job, one command after another. */
async function commandToCloud(): Promise<number[]> {
  const stamp = Date.now();
  const db = await benchDatabase('failover');
  const discord = await startFakeDiscord({ heartbeatIntervalMs: 41_250 });
  const box = await startFakeA1111({ mode: 'freeze' });
  const hf = await startFakeHFEndpoint();
  const prefix = `bench-failover-cmd:${stamp}`;
  const env = {
    ...systemEnv({ discordApiUrl: discord.apiUrl, databaseUrl: db.url, prefix }),
    BACKENDS: 'a1111,huggingface',
    A1111_URL: box.url,
    HF_ENDPOINT_URL: hf.url,
    HF_TOKEN: 'hf_bench',
    DEFAULT_DAILY_IMAGES: '100000',
    NSFW_CLASSIFIER: 'off',
  };
  const procs = [(await spawnReady('worker', env)).child, (await spawnReady('worker', env)).child, (await spawnReady('bot', env)).child];
  const times: number[] = [];
  for (let n = 0; n < COMMANDS; n++) {
    const before = hf.requests.length;
    const i = await discord.slashCommand({
      name: 'imagine',
      user: { id: String(4200000000000000000n + BigInt(n)), username: `m${n}` },
      options: [
        { name: 'prompt', type: 3, value: `frozen ${n}` },
        { name: 'steps', type: 4, value: 4 },
      ],
    });
    await discord.waitFor(() => (i.original()?.attachments.some((a) => a.filename.startsWith('image-')) ? true : undefined), 60_000);
    const hit = hf.requests[before];
    times.push(hit ? hit.at - i.createdAt : NaN);
  }
  for (const p of procs) p.kill('SIGKILL');
  await Promise.all(procs.map((p) => once(p, 'exit')));
  await discord.close();
  await box.close();
  await hf.close();
  await clearPrefix(prefix);
  await db.drop();
  return times;
}

out(
  `bench/failover: node ${process.version}, ${JOBS} jobs per scenario, production timeouts (BOX_DEAD_AFTER_MS 2 s, PROGRESS_TIMEOUT_MS 10 s, HEALTH_PROBE_MS 5 s), naive chain timeout ${NAIVE_TIMEOUT_MS / 1000} s`,
);
out('time from enqueue until the fallback backend receives the job (one job after another)');
for (const s of SCENARIOS) {
  const t = await ours(s);
  const n = await naive(s);
  out(`\n${s.name}`);
  out(`  ours, first job (finds the failure out): ${f(t[0]!)}`);
  out(`  ours, steady state (jobs 2+, median):    ${f(median(t.slice(1)))}`);
  out(`  every job: ${t.map(f).join(', ')}`);
  out(`  naive chain (30 s timeout):              ${f(n)}`);
}
const cmd = await commandToCloud();
out('\nhung (frozen) box, two worker processes, from the member’s /imagine until the cloud receives the job');
out(`  first job (finds the box dead):         ${f(cmd[0]!)}`);
out(`  steady state (jobs 2+, median):         ${f(median(cmd.slice(1)))}, max ${f(Math.max(...cmd.slice(1)))}`);
out(`  every job: ${cmd.map(f).join(', ')}`);
process.exit(0);
