/**
 * Failover: time from enqueue until the fallback backend (a Hugging Face endpoint fake) receives the
 * job, with the GPU box (a) refusing connections, (b) hanging, (c) dying mid-job, through the real
 * worker and queue; beside it, a naive chain that tries each provider in turn with a 30 s timeout.
 *
 *   npm run bench:failover        (BENCH_JOBS=6 jobs per scenario; PROGRESS_TIMEOUT_MS as in production)
 */
import { randomUUID } from 'node:crypto';
import { QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { loadConfig, workerConfigSchema } from '../core/config.js';
import { type JobPayload, parseImagineOptions } from '../core/generation.js';
import { createLogger } from '../core/io/logger.js';
import { createGenerateQueue, createRedis, GENERATE_QUEUE } from '../core/io/queue.js';
import { type FakeA1111Mode, startFakeA1111 } from '../tests/fakes/a1111.js';
import { startFakeHFEndpoint } from '../tests/fakes/huggingface.js';
import { startWorker } from '../worker/main.js';

const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const JOBS = Number(process.env.BENCH_JOBS ?? 6);
const NAIVE_TIMEOUT_MS = 30_000;
const out = (s: string) => process.stdout.write(`${s}\n`);
const f = (ms: number) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(0)} ms`);

type Scenario = { name: string; mode: FakeA1111Mode | 'refused' };
const SCENARIOS: Scenario[] = [
  { name: '(a) box refuses connections', mode: 'refused' },
  { name: '(b) box hangs (accepts, never answers)', mode: 'hang' },
  { name: '(c) box dies mid-job', mode: 'die-mid-job' },
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
  const r = new Redis(REDIS_URL);
  const keys = await r.keys(`${prefix}*`);
  if (keys.length) await r.del(...keys);
  await r.quit();
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

out(`bench/failover: node ${process.version}, ${JOBS} jobs per scenario, naive chain timeout ${NAIVE_TIMEOUT_MS / 1000} s`);
out('time from enqueue until the fallback backend receives the job');
for (const s of SCENARIOS) {
  const t = await ours(s);
  // The circuit opens after CIRCUIT_FAILURES (3) consecutive failures: jobs 1-3 meet a closed circuit.
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
  const closed = median(t.slice(0, 3));
  const open = median(t.slice(3));
  const n = await naive(s);
  out(`\n${s.name}`);
  out(`  ours, circuit closed (jobs 1-3, median): ${f(closed)}`);
  out(`  ours, circuit open   (jobs 4+, median):  ${f(open)}`);
  out(`  every job: ${t.map(f).join(', ')}`);
  out(`  naive chain (30 s timeout):             ${f(n)}`);
  out(`  ratio naive / ours: circuit closed ${(n / closed).toFixed(1)}×, circuit open ${(n / open).toFixed(1)}×`);
}
process.exit(0);
