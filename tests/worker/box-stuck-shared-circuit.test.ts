import { Redis } from 'ioredis';
import { afterEach } from 'vitest';
import { createLogger } from '../../core/io/logger.js';
import { createA1111Backend } from '../../worker/backends/a1111.js';
import { BackendChain } from '../../worker/backends/chain.js';
import { BoxLeases } from '../../worker/boxes/leases.js';
import { BoxPool } from '../../worker/boxes/pool.js';
import { type FakeA1111, startFakeA1111 } from '../fakes/a1111.js';
import { describe, expect, test } from '../setup/fixtures.js';

/*
 * Found in review. Promise 8: "no member's job is ever used to test whether a failing backend has recovered: health
 * probes do that." Two workers share one A1111 box. Worker A's job finds the sampler stuck and opens
 * the box's shared circuit; A remembers where it stuck (`stuck`, per process) so A's probe keeps
 * the box unhealthy. Worker B never saw it: B's probe asks only /sd-models, finds the box "healthy"
 * and closes the shared circuit after probeIntervalMs; B's next member job is then sent to the box
 * and is what discovers, progressTimeoutMs later, that the sampler is still stuck.
 */
const REDIS_URL = process.env.TEST_REDIS_URL || 'redis://127.0.0.1:6379';
const log = createLogger({ level: 'silent' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of closers.reverse()) await c();
  closers = [];
});

async function worker(prefix: string, url: string) {
  const conn = new Redis(REDIS_URL, { enableAutoPipelining: true });
  const sub = new Redis(REDIS_URL);
  closers.push(
    () => conn.disconnect(),
    () => sub.disconnect(),
  );
  const pool = await BoxPool.start(new BoxLeases(conn, prefix, 5000), sub, log);
  const backend = createA1111Backend({
    id: 'a1111',
    url,
    boxId: 'box1',
    pollIntervalMs: 20,
    progressTimeoutMs: 400,
    deadAfterMs: 1000,
    log,
  });
  const chain = new BackendChain({ backends: [backend], log, price: () => 0, pool, probeIntervalMs: 300, breakerThreshold: 3 });
  return { pool, chain };
}

const job = (jobId: string) => ({
  jobId,
  request: {
    kind: 'txt2img',
    prompt: 'x',
    negative: '',
    width: 64,
    height: 48,
    count: 1,
    seed: 1,
    steps: 20,
    guidance: 6,
    preset: 'sdxl',
    replicateModel: 'sdxl',
  } as const,
});
const ctx = () => ({ signal: new AbortController().signal, onProgress: () => undefined });

describe('a stuck sampler on a box two workers share', () => {
  test("the other worker's probe does not declare it recovered, and no member job is sent to find out", async ({ redisPrefix }) => {
    const fake: FakeA1111 = await startFakeA1111({ mode: 'stall', stepDelayMs: 10 });
    closers.push(() => fake.close());
    const a = await worker(redisPrefix, fake.url);
    const b = await worker(redisPrefix, fake.url);

    // Worker A's job: the sampler stops at step 2; A gives the job up and opens the box's circuit for everyone.
    const first = await a.chain.run(job('j1'), ctx(), { paidAllowed: false }).catch((e: unknown) => e);
    expect((first as { code?: string }).code).toBe('all_backends_failed');
    await expect.poll(async () => (await a.pool.openCircuits(['box1'])).has('box1')).toBe(true);
    expect(fake.jobs[0]?.outcome).toBe('hung');

    // Worker B probes, as startProbes() does every probeIntervalMs / 2.
    for (let i = 0; i < 8; i++) {
      await b.chain.probeOpenCircuits();
      await sleep(150);
    }
    const stillOpen = (await a.pool.openCircuits(['box1'])).has('box1');

    // A member's job on worker B.
    const second = await b.chain.run(job('j2'), ctx(), { paidAllowed: false }).catch((e: unknown) => e);
    const attempt = (second as { attempts?: { outcome: string; errorKind?: string; detail?: string }[] }).attempts?.[0];
    // Before the fix: stillOpen is false (B's probe closed it: /sd-models answers), and the member's job was
    // sent to the stuck box: attempt { outcome: 'failed', errorKind: 'timeout' } after progressTimeoutMs.
    expect(stillOpen).toBe(true);
    expect(attempt).toMatchObject({ outcome: 'skipped', detail: 'circuit open' });
  });

  test('a box whose generation moves (the web UI, say) is found well at the next probe, and its shared circuit closes', async ({
    redisPrefix,
  }) => {
    const fake: FakeA1111 = await startFakeA1111({ stepDelayMs: 40 });
    closers.push(() => fake.close());
    const b = await worker(redisPrefix, fake.url);
    await b.pool.openCircuit('box1', 'taken for hung by another worker');
    // A generation not sent by any worker of ours, moving a step every 40 ms.
    const web = fetch(`${fake.url}/sdapi/v1/txt2img`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'web ui', steps: 200, width: 64, height: 48, batch_size: 1, n_iter: 1 }),
    }).catch(() => undefined);
    await expect.poll(() => fake.jobs[0]?.startedAt, { timeout: 5000 }).toBeDefined();
    await sleep(350);
    await b.chain.probeOpenCircuits(); // first sight of the busy box: not yet known to move
    expect((await b.pool.openCircuits(['box1'])).has('box1')).toBe(true);
    await sleep(150);
    await b.chain.probeOpenCircuits(); // it moved since: well
    expect((await b.pool.openCircuits(['box1'])).has('box1')).toBe(false);
    await fake.close();
    await web;
  });
});
