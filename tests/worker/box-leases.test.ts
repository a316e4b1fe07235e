import { Redis } from 'ioredis';
import { afterEach, describe, expect } from 'vitest';
import { boxIdOf, normalizeBoxUrl } from '../../worker/boxes/identity.js';
import { BoxLeases, CLEAN_HANDOVER_MS } from '../../worker/boxes/leases.js';
import { test } from '../setup/fixtures.js';

const REDIS_URL = process.env.TEST_REDIS_URL || 'redis://127.0.0.1:6379';
let conns: Redis[] = [];
afterEach(() => {
  for (const c of conns) c.disconnect();
  conns = [];
});

/** One worker's view of the leases, on its own connection. */
function worker(prefix: string, leaseMs = 5000): BoxLeases {
  const c = new Redis(REDIS_URL);
  conns.push(c);
  return new BoxLeases(c, prefix, leaseMs);
}

const waiter = (jobId: string, arrivedAt: number, priority = 1, boxes = ['box1']) => ({ jobId, arrivedAt, priority, boxes });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('GPU box leases shared by workers', () => {
  test('a box is identified by its normalised URL, whatever its spelling in a worker’s list', () => {
    expect(normalizeBoxUrl('HTTP://Gpu-Box:80/')).toBe('http://gpu-box');
    expect(boxIdOf('http://user:pw@gpu-box:7860/')).toBe(boxIdOf('http://gpu-box:7860'));
    expect(boxIdOf('http://gpu-box:7860')).not.toBe(boxIdOf('http://gpu-box:7861'));
  });

  test('one box, two workers: one job holds it, the other waits; the release hands it over with a larger fencing token', async ({
    redisPrefix,
  }) => {
    const a = worker(redisPrefix);
    const b = worker(redisPrefix);
    const first = await a.tryAcquire(waiter('j1', 1), 5000);
    expect(first).toMatchObject({ kind: 'granted', box: 'box1' });
    const waiting = await b.tryAcquire(waiter('j2', 2), 5000);
    expect(waiting).toMatchObject({ kind: 'waiting', ahead: 0, usable: 1 });
    expect((waiting as { busyElapsedMs: number[] }).busyElapsedMs).toHaveLength(1);
    const fence1 = (first as { fence: number }).fence;
    await a.release('box1', fence1);
    const second = await b.tryAcquire(waiter('j2', 2), 5000);
    expect(second).toMatchObject({ kind: 'granted', box: 'box1' });
    expect((second as { fence: number }).fence).toBeGreaterThan(fence1);
    // The old holder's token no longer renews nor releases anything.
    expect(await a.renew('box1', fence1)).toBe(false);
    await a.release('box1', fence1);
    expect(await b.renew('box1', (second as { fence: number }).fence)).toBe(true);
  });

  test('a killed worker’s lease lapses by itself within the lease time, and the next job in line gets the box', async ({ redisPrefix }) => {
    const dead = worker(redisPrefix, 400);
    const live = worker(redisPrefix, 400);
    expect((await dead.tryAcquire(waiter('j1', 1), 400)).kind).toBe('granted');
    expect((await live.tryAcquire(waiter('j2', 2), 400)).kind).toBe('waiting');
    await sleep(500);
    expect(await live.tryAcquire(waiter('j2', 2), 400)).toMatchObject({ kind: 'granted', box: 'box1' });
  });

  test('the line is BullMQ priority, then arrival; a waiter whose worker died drops out of it', async ({ redisPrefix }) => {
    const w = worker(redisPrefix, 300);
    const holder = (await w.tryAcquire(waiter('run', 0), 300)) as { fence: number };
    // Arrived first but with a later turn (more images today), then two with the first turn.
    await w.tryAcquire(waiter('late-turn', 1, 5), 300);
    await w.tryAcquire(waiter('gone', 3, 1), 300);
    expect(await w.tryAcquire(waiter('next', 4, 1), 300)).toMatchObject({ kind: 'waiting', ahead: 1 });
    expect(await w.tryAcquire(waiter('late-turn', 1, 5), 300)).toMatchObject({ kind: 'waiting', ahead: 2 });
    // Everyone renews but 'gone', whose worker died.
    for (let k = 0; k < 4; k++) {
      await sleep(100);
      expect(await w.renew('box1', holder.fence)).toBe(true);
      await w.tryAcquire(waiter('next', 4, 1), 300);
      await w.tryAcquire(waiter('late-turn', 1, 5), 300);
    }
    expect(await w.tryAcquire(waiter('next', 4, 1), 300)).toMatchObject({ kind: 'waiting', ahead: 0 });
    await w.release('box1', holder.fence);
    expect(await w.tryAcquire(waiter('late-turn', 1, 5), 300)).toMatchObject({ kind: 'waiting', ahead: 1 });
    expect(await w.tryAcquire(waiter('next', 4, 1), 300)).toMatchObject({ kind: 'granted' });
  });

  test('a box whose circuit another worker opened is refused to every job; waiters learn there is nothing to wait for', async ({
    redisPrefix,
  }) => {
    const a = worker(redisPrefix);
    const b = worker(redisPrefix);
    await a.openCircuit('box1', 'no answer from /progress for 2000 ms');
    expect(await b.tryAcquire(waiter('j1', 1), 5000)).toEqual({ kind: 'closed' });
    expect((await b.openCircuits(['box1', 'box2'])).get('box1')).toMatchObject({ reason: 'no answer from /progress for 2000 ms' });
    await b.closeCircuit('box1');
    expect((await b.tryAcquire(waiter('j1', 1), 5000)).kind).toBe('granted');
  });

  test('two boxes: the first two jobs get one each, the third waits behind both', async ({ redisPrefix }) => {
    const w = worker(redisPrefix);
    const boxes = ['box1', 'box2'];
    const r1 = await w.tryAcquire(waiter('j1', 1, 1, boxes), 5000);
    const r2 = await w.tryAcquire(waiter('j2', 2, 1, boxes), 5000);
    expect([r1, r2].map((r) => (r as { box: string }).box).sort()).toEqual(boxes);
    expect(await w.tryAcquire(waiter('j3', 3, 1, boxes), 5000)).toMatchObject({ kind: 'waiting', ahead: 0, usable: 2 });
  });

  test('releasing a box wakes the job next in line for it by name, so the rest of the line sleeps on', async ({ redisPrefix }) => {
    const w = worker(redisPrefix);
    const sub = new Redis(REDIS_URL);
    conns.push(sub);
    const heard: string[] = [];
    sub.on('message', (_c: string, m: string) => heard.push(m));
    await sub.subscribe(w.wakeChannel);
    const holder = (await w.tryAcquire(waiter('j1', 1), 5000)) as { fence: number };
    await w.tryAcquire(waiter('j2', 2), 5000);
    await w.tryAcquire(waiter('j3', 3), 5000);
    await w.release('box1', holder.fence);
    await expect.poll(() => heard).toEqual(['box1 j2']);
  });

  test('recent run times on boxes are shared by every worker', async ({ redisPrefix }) => {
    const w = worker(redisPrefix);
    const held = (await w.tryAcquire(waiter('j1', 1), 5000)) as { fence: number };
    // Recorded by the release itself, in the same round trip.
    await w.release('box1', held.fence, { clean: true, run: { ms: 2500, count: 1 } });
    expect(await worker(redisPrefix).recentRuns()).toEqual([{ ms: 2500, count: 1, backend: 'box1' }]);
  });

  test('a clean release hands the box over: the next grant says how long ago; a release that was not clean or a lapsed lease does not', async ({
    redisPrefix,
  }) => {
    const w = worker(redisPrefix, 300);
    // The box's first lease: nothing was handed over.
    const first = await w.tryAcquire(waiter('j1', 1), 5000);
    expect(first).toMatchObject({ kind: 'granted' });
    expect(first).not.toHaveProperty('handoverMs');
    await w.release('box1', (first as { fence: number }).fence, { clean: true });
    const second = await w.tryAcquire(waiter('j2', 2), 5000);
    expect((second as { handoverMs?: number }).handoverMs).toBeLessThan(CLEAN_HANDOVER_MS);
    // Released without the box having answered (cancelled, failed): no handover.
    await w.release('box1', (second as { fence: number }).fence);
    const third = await w.tryAcquire(waiter('j3', 3), 5000);
    expect(third).not.toHaveProperty('handoverMs');
    // A clean release, then a holder that crashed (its lease lapsed): the next grant is not a handover.
    await w.release('box1', (third as { fence: number }).fence, { clean: true });
    expect(await w.tryAcquire(waiter('j4', 4), 5000)).toHaveProperty('handoverMs');
    await sleep(400);
    expect(await w.tryAcquire(waiter('j5', 5), 5000)).not.toHaveProperty('handoverMs');
  });
});
