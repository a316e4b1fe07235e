import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterEach, describe, expect } from 'vitest';
import { publishBackendStatus } from '../../core/io/backend-status.js';
import { QueuePositions } from '../../core/io/queue-position.js';
import { test } from '../setup/fixtures.js';

const REDIS_URL = process.env.TEST_REDIS_URL || 'redis://127.0.0.1:6379';
const QUEUE = 'generate';

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c().catch(() => undefined);
});

function setup(prefix: string) {
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  const queue = new Queue(QUEUE, { connection: redis, prefix });
  closers.push(
    () => redis.quit(),
    () => queue.close(),
  );
  const positions = new QueuePositions(
    redis,
    { wait: queue.toKey('wait'), prioritized: queue.toKey('prioritized'), active: queue.toKey('active'), delayed: queue.toKey('delayed') },
    prefix,
  );
  return { redis, queue, positions };
}

/** Runs every waiting job with one worker at concurrency 1 and returns the ids in the order they started. */
async function drainOrder(prefix: string, total: number): Promise<string[]> {
  const order: string[] = [];
  const conn = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  const worker = new Worker(
    QUEUE,
    async (job) => {
      order.push(job.id!);
      if (order.length === total) done();
    },
    { connection: conn, prefix, concurrency: 1 },
  );
  await all;
  await worker.close();
  await conn.quit();
  return order;
}

describe('QueuePositions', () => {
  test('jobs ahead match the order a BullMQ worker really takes them: mixed priorities, FIFO within one, jobs without a priority first', async ({
    redisPrefix,
  }) => {
    const { queue, positions } = setup(redisPrefix);
    // Added in an order that differs from the run order on purpose.
    const adds: [string, number | undefined, boolean?][] = [
      ['p3-a', 3],
      ['p1-a', 1],
      ['p2-a', 2],
      ['plain-a', undefined],
      ['p1-b', 1],
      ['p3-b', 3],
      ['plain-b', undefined],
      ['lifo', undefined, true],
      ['p2-b', 2],
      ['p1-c', 1],
    ];
    for (const [id, priority, lifo] of adds) {
      await queue.add('txt2img', {}, { jobId: id, ...(priority ? { priority } : {}), ...(lifo ? { lifo: true } : {}) });
    }
    const ids = adds.map(([id]) => id);
    const snap = await positions.read([...ids, 'no-such-job']);
    expect(snap.waiting).toBe(ids.length);
    expect(snap.active).toBe(0);
    expect(snap.places.get('no-such-job')).toEqual({ state: 'other' });
    const ahead = new Map(
      ids.map((id) => {
        const p = snap.places.get(id);
        if (p?.state !== 'waiting') throw new Error(`${id} is not waiting`);
        return [id, p.ahead] as const;
      }),
    );
    // Every place is taken exactly once.
    expect([...ahead.values()].sort((a, b) => a - b)).toEqual(ids.map((_, i) => i));
    const predicted = [...ids].sort((a, b) => ahead.get(a)! - ahead.get(b)!);
    expect(predicted).toEqual(['lifo', 'plain-a', 'plain-b', 'p1-a', 'p1-b', 'p1-c', 'p2-a', 'p2-b', 'p3-a', 'p3-b']);
    expect(await drainOrder(redisPrefix, ids.length)).toEqual(predicted);
  });

  test('as jobs start, the others move up; running and delayed jobs are not waiting; backend reports come in the same read', async ({
    redisPrefix,
  }) => {
    const { redis, queue, positions } = setup(redisPrefix);
    for (const [id, priority] of [
      ['a', 1],
      ['b', 1],
      ['c', 2],
      ['d', 5],
    ] as const)
      await queue.add('txt2img', {}, { jobId: id, priority });
    await queue.add('txt2img', {}, { jobId: 'later', priority: 1, delay: 60_000 });
    await publishBackendStatus(redis, redisPrefix, [
      {
        backend: 'a1111',
        family: 'a1111',
        worker: 'w1',
        healthy: true,
        detail: '',
        latencyMs: 1,
        circuit: 'closed',
        inFlight: 0,
        paid: false,
        price: '',
        at: Date.now(),
        concurrency: 2,
      },
    ]);
    await redis.hset(`${redisPrefix}:backend-status`, 'junk@w9', '{not json');

    // Take one job the way a worker does, and keep it running.
    const conn = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
    let release!: () => void;
    const hold = new Promise<void>((r) => (release = r));
    let started!: () => void;
    const isActive = new Promise<void>((r) => (started = r));
    const worker = new Worker(
      QUEUE,
      async () => {
        started();
        await hold;
      },
      { connection: conn, prefix: redisPrefix, concurrency: 1 },
    );
    closers.push(async () => {
      release();
      await worker.close();
      await conn.quit();
    });
    await isActive;

    const snap = await positions.read(['a', 'b', 'c', 'd', 'later']);
    expect(snap.active).toBe(1);
    expect(snap.waiting).toBe(3);
    expect(snap.places.get('a')).toEqual({ state: 'other' });
    expect(snap.places.get('b')).toEqual({ state: 'waiting', ahead: 0 });
    expect(snap.places.get('c')).toEqual({ state: 'waiting', ahead: 1 });
    expect(snap.places.get('d')).toEqual({ state: 'waiting', ahead: 2 });
    expect(snap.places.get('later')).toEqual({ state: 'delayed' });
    expect(snap.statuses).toHaveLength(1);
    expect(snap.statuses[0]).toMatchObject({ worker: 'w1', concurrency: 2 });

    // A member with fewer images today jumps ahead of c and d.
    await queue.add('txt2img', {}, { jobId: 'e', priority: 1 });
    const after = await positions.read(['b', 'c', 'd', 'e']);
    expect([...after.places.values()]).toEqual([
      { state: 'waiting', ahead: 0 },
      { state: 'waiting', ahead: 2 },
      { state: 'waiting', ahead: 3 },
      { state: 'waiting', ahead: 1 },
    ]);
  });

  test('an empty id list still answers (counts only); many ids cost one command', async ({ redisPrefix }) => {
    const { redis, queue, positions } = setup(redisPrefix);
    const ids = Array.from({ length: 500 }, (_, i) => `j${i}`);
    await queue.addBulk(ids.map((id, i) => ({ name: 'txt2img', data: {}, opts: { jobId: id, priority: 1 + (i % 7) } })));
    expect((await positions.read([])).waiting).toBe(500);
    // Counted at the client: MONITOR would see every parallel test's traffic (and ioredis's
    // monitor mode chokes on it). One command sent means one round trip.
    const sent: string[] = [];
    const send = redis.sendCommand.bind(redis);
    redis.sendCommand = ((cmd: Parameters<typeof send>[0], ...rest: unknown[]) => {
      sent.push(cmd.name.toLowerCase());
      return (send as (...a: unknown[]) => unknown)(cmd, ...rest);
    }) as typeof redis.sendCommand;
    const snap = await positions.read(ids);
    redis.sendCommand = send;
    // EVALSHA, or EVALSHA then EVAL on a Redis that lost its script cache.
    expect(sent.filter((c) => c !== 'eval')).toEqual(['evalsha']);
    const aheads = ids.map((id) => (snap.places.get(id) as { ahead: number }).ahead).sort((a, b) => a - b);
    expect(aheads).toEqual(ids.map((_, i) => i));
  });
});
