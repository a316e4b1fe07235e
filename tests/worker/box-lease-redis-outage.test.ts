import { connect, createServer, type Server, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { afterEach } from 'vitest';
import { BackendError } from '../../core/errors.js';
import { createLogger } from '../../core/io/logger.js';
import { createRedis } from '../../core/io/queue.js';
import { createA1111Backend } from '../../worker/backends/a1111.js';
import { BoxLeases } from '../../worker/boxes/leases.js';
import { BoxPool } from '../../worker/boxes/pool.js';
import { type FakeA1111, startFakeA1111 } from '../fakes/a1111.js';
import { describe, expect, test } from '../setup/fixtures.js';

/*
 * Found in review (promise 8). LeaseHold (worker/boxes/pool.ts) promises: "While Redis cannot be reached the lease still counts as
 * ours until two thirds of its life have passed since it was last confirmed". That relies on renew()
 * rejecting. The worker's `plain` connection (worker/main.ts) is created with role 'blocking'
 * (maxRetriesPerRequest: null, offline queue on), so during a Redis restart renew() neither resolves
 * nor rejects: it hangs. The A1111 progress watcher awaits holds() before every poll, stops polling,
 * and its watchdog declares the (healthy, still generating) box dead: the job is abandoned and the
 * box's circuit opened, the generation left running on the box.
 */
const REDIS_PORT = Number(new URL(process.env.TEST_REDIS_URL || 'redis://127.0.0.1:6379').port || 6379);
const log = createLogger({ level: 'silent' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of closers.reverse()) await c();
  closers = [];
});

/** A TCP proxy to the test Redis that can be taken down and brought back on the same port (a Redis restart). */
async function redisProxy() {
  let server: Server | undefined;
  const sockets = new Set<Socket>();
  let port = 0;
  const up = () =>
    new Promise<void>((resolve) => {
      server = createServer((client) => {
        const upstream = connect(REDIS_PORT, '127.0.0.1');
        sockets.add(client).add(upstream);
        client.pipe(upstream).pipe(client);
        const end = () => {
          client.destroy();
          upstream.destroy();
        };
        client.on('error', end).on('close', end);
        upstream.on('error', end).on('close', end);
      });
      server.listen(port, '127.0.0.1', () => {
        port = (server!.address() as { port: number }).port;
        resolve();
      });
    });
  const down = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      sockets.clear();
      server!.close(() => resolve());
    });
  await up();
  return { url: () => `redis://127.0.0.1:${port}`, up, down };
}

describe('box lease during a Redis restart', () => {
  test('a job generating on a healthy box survives a Redis outage shorter than its lease', async ({ redisPrefix }) => {
    const proxy = await redisProxy();
    // Exactly as worker/main.ts builds `plain`: commands queue while disconnected.
    const plain = createRedis(proxy.url(), 'blocking', { enableAutoPipelining: true }).on('error', () => undefined);
    const sub = new Redis(process.env.TEST_REDIS_URL || 'redis://127.0.0.1:6379');
    closers.push(
      () => sub.disconnect(),
      () => plain.disconnect(),
      () => proxy.down().catch(() => undefined),
    );
    const fake: FakeA1111 = await startFakeA1111({ stepDelayMs: 100 });
    closers.push(() => fake.close());
    const leaseMs = 30_000;
    const pool = await BoxPool.start(new BoxLeases(plain, redisPrefix, leaseMs), sub, log);
    const grant = await pool.leases.tryAcquire({ jobId: 'j1', priority: 0, arrivedAt: 1, boxes: ['box1'] }, leaseMs);
    expect(grant.kind).toBe('granted');
    const hold = pool.hold(grant as { box: string; fence: number }, 'a1111');
    const backend = createA1111Backend({
      id: 'a1111',
      url: fake.url,
      boxId: 'box1',
      pollIntervalMs: 50,
      progressTimeoutMs: 30_000,
      deadAfterMs: 500,
      log,
    });
    const request = {
      kind: 'txt2img',
      prompt: 'x',
      negative: '',
      width: 64,
      height: 48,
      count: 1,
      seed: 1,
      steps: 120,
      guidance: 6,
      preset: 'default',
      replicateModel: 'sdxl',
    } as const;
    const running = backend
      .generate(
        { jobId: 'j1', request },
        { signal: AbortSignal.any([new AbortController().signal, hold.signal]), onProgress: () => undefined, lease: hold },
      )
      .then(
        () => 'succeeded',
        (e: unknown) => e,
      );
    await expect.poll(() => fake.jobs[0]?.startedAt, { timeout: 5000 }).toBeDefined();
    // Redis restarts: 9 s down. The lease (30 s, last confirmed < 1 s ago) is ours by LeaseHold's own
    // rule until 20 s after its last confirmation; the box answers /progress throughout.
    await proxy.down();
    await sleep(9000);
    await proxy.up();
    const outcome = await running;
    await hold.release();
    // Before the fix: abandoned as 'unavailable' (opensCircuit), "no answer from /progress … box taken for dead".
    expect(outcome instanceof BackendError ? `${outcome.kind}: ${outcome.message}` : outcome).toBe('succeeded');
    expect(fake.jobs[0]?.outcome).toBe('done');
  }, 40_000);

  test('a renewal Redis does not answer counts as failed: holds() answers promptly, and the lease ends at two thirds of its life', async ({
    redisPrefix,
  }) => {
    const proxy = await redisProxy();
    const plain = createRedis(proxy.url(), 'blocking').on('error', () => undefined);
    const sub = new Redis(process.env.TEST_REDIS_URL || 'redis://127.0.0.1:6379');
    closers.push(
      () => sub.disconnect(),
      () => plain.disconnect(),
      () => proxy.down().catch(() => undefined),
    );
    const leaseMs = 1200;
    const pool = await BoxPool.start(new BoxLeases(plain, redisPrefix, leaseMs), sub, log);
    const grant = await pool.leases.tryAcquire({ jobId: 'j1', priority: 0, arrivedAt: 1, boxes: ['box1'] }, leaseMs);
    const hold = pool.hold(grant as { box: string; fence: number }, 'a1111');
    const since = performance.now();
    await proxy.down();
    await sleep(leaseMs / 4 + 50);
    const asked = performance.now();
    expect(await hold.holds()).toBe(true);
    // A renewal is waited for at most a sixth of the lease here (RENEW_ANSWER_MS caps it in production).
    expect(performance.now() - asked).toBeLessThan(leaseMs / 6 + 150);
    await expect.poll(() => hold.signal.aborted, { timeout: leaseMs, interval: 20 }).toBe(true);
    expect(performance.now() - since).toBeGreaterThanOrEqual((leaseMs * 2) / 3);
    expect(await hold.holds()).toBe(false);
  });
});
