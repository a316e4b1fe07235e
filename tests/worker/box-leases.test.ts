import { Redis } from 'ioredis';
import { afterEach, describe, expect, vi } from 'vitest';
import { createLogger } from '../../core/io/logger.js';
import { boxIdOf, normalizeBoxUrl } from '../../worker/boxes/identity.js';
import { BoxLeases, CLEAN_HANDOVER_MS } from '../../worker/boxes/leases.js';
import { BoxPool, type WaitOutcome } from '../../worker/boxes/pool.js';
import { test } from '../setup/fixtures.js';

const REDIS_URL = process.env.TEST_REDIS_URL || 'redis://127.0.0.1:6379';
let conns: Redis[] = [];
afterEach(() => {
  vi.useRealTimers();
  for (const c of conns) c.disconnect();
  conns = [];
});

/** Every message on the wake channel, in the order Redis sent them. */
async function listen(w: BoxLeases): Promise<string[]> {
  const sub = new Redis(REDIS_URL);
  conns.push(sub);
  const heard: string[] = [];
  sub.on('message', (_c: string, m: string) => heard.push(m));
  await sub.subscribe(w.wakeChannel);
  return heard;
}

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

  test('a waiter that leaves the line instead of taking the box it was woken for wakes the job now next for it, by name', async ({
    redisPrefix,
  }) => {
    const w = worker(redisPrefix);
    const heard = await listen(w);
    const holder = (await w.tryAcquire(waiter('j1', 1), 5000)) as { fence: number };
    await w.tryAcquire(waiter('j2', 2), 5000);
    await w.tryAcquire(waiter('j3', 3), 5000);
    await w.tryAcquire(waiter('j4', 4), 5000);
    await w.release('box1', holder.fence);
    // j2 was woken, but goes to the cloud instead (or was cancelled) at that very moment.
    await w.leave(waiter('j2', 2));
    await expect.poll(() => heard).toEqual(['box1 j2', 'box1 j3']);
    expect(await w.tryAcquire(waiter('j3', 3), 5000)).toMatchObject({ kind: 'granted', box: 'box1' });
  });

  test('a leave wakes only the first job behind that wants the box, also when that job wants several boxes', async ({ redisPrefix }) => {
    const w = worker(redisPrefix);
    const heard = await listen(w);
    const onY = (await w.tryAcquire(waiter('y', 0, 1, ['boxY']), 5000)) as { fence: number };
    // Both wait for X (free once its holder goes); 'both' would take Y first, but Y is busy.
    const onX = (await w.tryAcquire(waiter('x', 0, 1, ['boxX']), 5000)) as { fence: number };
    await w.tryAcquire(waiter('leaver', 1, 1, ['boxX']), 5000);
    await w.tryAcquire(waiter('both', 2, 1, ['boxY', 'boxX']), 5000);
    await w.tryAcquire(waiter('last', 3, 1, ['boxX']), 5000);
    await w.release('boxX', onX.fence);
    await w.leave(waiter('leaver', 1));
    await expect.poll(() => heard).toEqual(['boxX leaver', 'boxX both']);
    expect(await w.tryAcquire(waiter('both', 2, 1, ['boxY', 'boxX']), 5000)).toMatchObject({ kind: 'granted', box: 'boxX' });
    await w.release('boxY', onY.fence);
  });

  test('a waiter next for two free boxes that leaves wakes the job now next for each', async ({ redisPrefix }) => {
    const w = worker(redisPrefix);
    const heard = await listen(w);
    const onX = (await w.tryAcquire(waiter('x', 0, 1, ['boxX']), 5000)) as { fence: number };
    const onY = (await w.tryAcquire(waiter('y', 0, 1, ['boxY']), 5000)) as { fence: number };
    await w.tryAcquire(waiter('leaver', 1, 1, ['boxX', 'boxY']), 5000);
    await w.tryAcquire(waiter('wantsY', 2, 1, ['boxY']), 5000);
    await w.tryAcquire(waiter('wantsX', 3, 1, ['boxX']), 5000);
    await w.tryAcquire(waiter('later', 4, 1, ['boxX', 'boxY']), 5000);
    await w.release('boxX', onX.fence);
    await w.release('boxY', onY.fence);
    await w.leave(waiter('leaver', 1));
    await expect.poll(() => heard).toEqual(['boxX leaver', 'boxY leaver', 'boxY wantsY', 'boxX wantsX']);
    expect(await w.tryAcquire(waiter('wantsY', 2, 1, ['boxY']), 5000)).toMatchObject({ kind: 'granted', box: 'boxY' });
    expect(await w.tryAcquire(waiter('wantsX', 3, 1, ['boxX']), 5000)).toMatchObject({ kind: 'granted', box: 'boxX' });
  });

  test('leaving wakes nobody while the box is busy or broken, or when a waiter ahead takes the free box anyway', async ({
    redisPrefix,
  }) => {
    const w = worker(redisPrefix);
    const other = new Redis(REDIS_URL);
    conns.push(other);
    const heard = await listen(w);
    const holder = (await w.tryAcquire(waiter('j1', 1), 5000)) as { fence: number };
    for (const id of ['j2', 'j3', 'j4', 'j5']) await w.tryAcquire(waiter(id, Number(id.slice(1))), 5000);
    // Busy: the next release wakes the line.
    await w.leave(waiter('j2', 2));
    await w.release('box1', holder.fence);
    await expect.poll(() => heard).toEqual(['box1 j3']);
    // Free, but j3 ahead takes it: j4 leaving from behind changes nobody's turn.
    await w.leave(waiter('j4', 4));
    // Broken: nothing to wake anyone for.
    await w.openCircuit('box1', 'no answer');
    await w.leave(waiter('j3', 3));
    // Everything above reached Redis before this, so the channel has said all it will about it.
    await other.publish(w.wakeChannel, 'end');
    await expect.poll(() => heard).toEqual(['box1 j3', 'box1', 'end']);
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

describe('the boxes’ line as workers wait in it', () => {
  const log = createLogger({ level: 'silent' });

  /** One worker process: its own connections, and a lease time so long that its waiters' poll is its slowest (1 s). */
  async function pool(prefix: string): Promise<{ leases: BoxLeases; pool: BoxPool }> {
    const leases = worker(prefix, 600_000);
    const sub = new Redis(REDIS_URL);
    conns.push(sub);
    return { leases, pool: await BoxPool.start(leases, sub, log) };
  }

  /**
   * Waits for `ready` on the real clock, for at most five seconds (expect.poll would move the fake
   * clock on, and with it the waiters' polls).
   */
  const realTimeout = globalThis.setTimeout;
  async function until(ready: () => boolean): Promise<void> {
    for (let i = 0; i < 500 && !ready(); i++) await new Promise((r) => realTimeout(r, 10));
  }

  test('a waiter woken for a free box that leaves instead wakes the job behind it, which takes the box without waiting for its poll', async ({
    redisPrefix,
  }) => {
    const holderSide = await pool(redisPrefix);
    const bSide = await pool(redisPrefix);
    const cSide = await pool(redisPrefix);
    const holder = (await holderSide.leases.tryAcquire(waiter('a', 1), 600_000)) as { fence: number };
    expect(holder).toMatchObject({ kind: 'granted' });
    // From here on a waiter's poll never fires: C can get the box only by being woken.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    let bDecides!: (leave: boolean) => void;
    let bAsked = 0;
    const b = bSide.pool.wait(waiter('b', 2), {
      signal: new AbortController().signal,
      onWaiting: () => {
        bAsked++;
        return new Promise<boolean>((r) => {
          bDecides = r;
        });
      },
    });
    await until(() => bAsked === 1);
    expect(bAsked).toBe(1);
    let cWaited = 0;
    let cOutcome: WaitOutcome | undefined;
    void cSide.pool
      .wait(waiter('c', 3), {
        signal: new AbortController().signal,
        onWaiting: () => {
          cWaited++;
          return false;
        },
      })
      .then((o) => {
        cOutcome = o;
      });
    await until(() => cWaited === 1);
    expect(cWaited).toBe(1);
    // The box is freed, which wakes B; B meanwhile decides to go to the cloud.
    await holderSide.leases.release('box1', holder.fence);
    bDecides(true);
    expect(await b).toEqual({ kind: 'left' });
    await until(() => cOutcome !== undefined);
    expect(cOutcome).toMatchObject({ kind: 'granted', box: 'box1' });
    expect(cWaited).toBe(1);
  });
});
