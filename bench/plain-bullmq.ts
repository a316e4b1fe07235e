/**
 * The floor under bench/overhead: plain BullMQ on the same Redis, a producer in this process and a
 * Worker whose job does nothing in a child process (as our bot and worker are split). What it costs
 * per job is what any BullMQ system pays; what bench/overhead measures above it is ours.
 *
 * Run by bench/overhead; `node --import tsx bench/plain-bullmq.ts worker <prefix> <concurrency>` is
 * the child.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { Queue, QueueEvents, Worker } from 'bullmq';
import { Redis } from 'ioredis';

const QUEUE = 'plain';

export interface PlainFigures {
  /** add → `completed` heard, one job at a time (ms). */
  latency: number[];
  jobsPerS: number;
}

/** Sequential latency and burst throughput of no-op jobs at `concurrency`, on `redisUrl` under `prefix`. */
export async function measurePlainBullmq(o: {
  redisUrl: string;
  prefix: string;
  concurrency: number;
  seq: number;
  jobs: number;
  /** Warm-up jobs before measuring, in a burst and as many one at a time (as bench/overhead warms ours). */
  warm: number;
}): Promise<PlainFigures> {
  const child = spawn(process.execPath, ['--import', 'tsx', new URL(import.meta.url).pathname, 'worker', o.prefix, String(o.concurrency)], {
    env: { ...process.env, BENCH_REDIS_URL: o.redisUrl },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  process.once('exit', () => child.kill('SIGKILL'));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (c: Buffer) => {
      if (c.toString().includes('ready')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`plain worker exited ${code}`)));
  });
  const producer = new Redis(o.redisUrl, { maxRetriesPerRequest: 1, enableOfflineQueue: false });
  const queue = new Queue(QUEUE, { connection: producer, prefix: o.prefix, defaultJobOptions: { removeOnComplete: { count: 5000 } } });
  const listener = new Redis(o.redisUrl, { maxRetriesPerRequest: null });
  // From the stream's start (the prefix is fresh): reading from '$' could miss the first events,
  // written before its first XREAD, and then wait for them forever.
  const events = new QueueEvents(QUEUE, { connection: listener, prefix: o.prefix, lastEventId: '0' });
  await events.waitUntilReady();
  let completed = 0;
  let lastAt = 0;
  let wake: (() => void) | undefined;
  events.on('completed', () => {
    completed++;
    lastAt = performance.now();
    wake?.();
  });
  const until = (n: number) =>
    new Promise<void>((resolve) => {
      if (completed >= n) return resolve();
      wake = () => {
        if (completed >= n) resolve();
      };
    });

  // Warm-up: connections, scripts, JIT.
  for (let n = 0; n < o.warm; n++) await queue.add('noop', { n });
  await until(o.warm);
  for (let n = 0; n < o.warm; n++) {
    const before = completed;
    await queue.add('noop', { n });
    await until(before + 1);
  }

  const latency: number[] = [];
  for (let n = 0; n < o.seq; n++) {
    const before = completed;
    const t = performance.now();
    await queue.add('noop', { n });
    await until(before + 1);
    latency.push(performance.now() - t);
  }
  const base = completed;
  const t0 = performance.now();
  for (let n = 0; n < o.jobs; n++) await queue.add('noop', { n });
  await until(base + o.jobs);
  const jobsPerS = o.jobs / ((lastAt - t0) / 1000);

  child.kill('SIGTERM');
  await once(child, 'exit');
  await events.close();
  await queue.obliterate({ force: true });
  await queue.close();
  await Promise.allSettled([producer.quit(), listener.quit()]);
  return { latency, jobsPerS };
}

if (process.argv[2] === 'worker') {
  const [prefix, concurrency] = process.argv.slice(3);
  const connection = new Redis(process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: null });
  const worker = new Worker(QUEUE, async () => ({ ok: true }), { connection, prefix, concurrency: Number(concurrency) });
  await worker.waitUntilReady();
  process.stdout.write('ready\n');
  process.once('SIGTERM', () => void worker.close().then(() => connection.quit().then(() => process.exit(0))));
}
