import type { Job } from 'bullmq';
import { Redis } from 'ioredis';
import { afterEach } from 'vitest';
import { type JobPayload, type JobResult, parseImagineOptions } from '../../core/generation.js';
import { createLogger } from '../../core/io/logger.js';
import { ResultStore } from '../../core/io/results.js';
import { createA1111Backend } from '../../worker/backends/a1111.js';
import { BackendChain } from '../../worker/backends/chain.js';
import { BoxLeases, CLEAN_HANDOVER_MS } from '../../worker/boxes/leases.js';
import { BoxPool } from '../../worker/boxes/pool.js';
import { createProcessor } from '../../worker/processor.js';
import { type FakeA1111, startFakeA1111 } from '../fakes/a1111.js';
import { describe, expect, test } from '../setup/fixtures.js';

/*
 * One box shared through the leases in Redis, as workers run it: the hand-over from one job to the
 * next on the box (when it is handed over, and what the next job may skip then).
 */

const REDIS_URL = process.env.TEST_REDIS_URL || 'redis://127.0.0.1:6379';
const log = createLogger({ level: 'silent' });
let closers: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of closers.reverse()) await c();
  closers = [];
});
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A result store whose storing of one job's images waits until the test lets it go. */
class GatedResults extends ResultStore {
  gated = new Set<string>();
  private readonly gates: (() => void)[] = [];
  storing = 0;
  override async putMany(entries: readonly (readonly [string, Buffer])[]): Promise<void> {
    if ([...this.gated].some((id) => entries[0]?.[0].includes(id))) {
      this.storing++;
      await new Promise<void>((r) => this.gates.push(r));
      this.storing--;
    }
    await super.putMany(entries);
  }
  open(): void {
    for (const g of this.gates.splice(0)) g();
  }
}

async function box(prefix: string) {
  const fake = await startFakeA1111({ stepDelayMs: 2 });
  closers.push(() => fake.close());
  const conn = new Redis(REDIS_URL, { enableAutoPipelining: true });
  const sub = new Redis(REDIS_URL);
  closers.push(
    () => conn.disconnect(),
    () => sub.disconnect(),
  );
  const leases = new BoxLeases(conn, prefix, 5000);
  const pool = await BoxPool.start(leases, sub, log);
  const backend = createA1111Backend({ id: 'a1111', url: fake.url, boxId: 'box1', pollIntervalMs: 20, progressTimeoutMs: 2000, log });
  const chain = new BackendChain({ backends: [backend], log, price: () => 0, pool });
  const results = new GatedResults(conn, prefix, 60);
  const process = createProcessor({ chain, results, log });
  let arrived = 0;
  const run = (prompt: string, jobId: string = crypto.randomUUID()) => {
    const payload: JobPayload = {
      v: 1,
      jobId,
      guildId: 'g',
      request: parseImagineOptions({ prompt, steps: 3 }),
      paidAllowed: false,
      nsfwAllowed: true,
    };
    const job = {
      id: jobId,
      data: payload,
      attemptsMade: 0,
      opts: { attempts: 3, priority: 1 },
      timestamp: ++arrived,
      updateProgress: async () => undefined,
    } as unknown as Job<JobPayload, JobResult>;
    return process(job);
  };
  return { fake, leases, results, run };
}

/** The idle checks the box was asked (before sending a job; the progress polls of a running job ask for the preview). */
const idleChecks = (fake: FakeA1111) =>
  fake.requests.filter((r) => r.path === '/sdapi/v1/progress' && r.query.includes('skip_current_image=true')).length;
const generations = (fake: FakeA1111) => fake.requests.filter((r) => r.path === '/sdapi/v1/txt2img').length;

describe('one box, one job after another', () => {
  test('the next job on a box its last job left cleanly a moment ago is sent without asking the box whether it is idle', async ({
    redisPrefix,
  }) => {
    const b = await box(redisPrefix);
    await b.run('first');
    // The box's first lease since nothing: the job asks.
    expect(idleChecks(b.fake)).toBe(1);
    await b.run('second');
    expect(generations(b.fake)).toBe(2);
    expect(idleChecks(b.fake)).toBe(1);
  });

  test('after a release that was not clean, or a clean one too long ago, the next job asks the box first', async ({ redisPrefix }) => {
    const b = await box(redisPrefix);
    await b.run('first');
    // Someone else's lease ends without its box having answered (cancelled, failed, lost).
    const other = await b.leases.tryAcquire({ jobId: 'other', priority: 0, arrivedAt: 0, boxes: ['box1'] }, 5000);
    expect(other.kind).toBe('granted');
    await b.leases.release('box1', (other as { fence: number }).fence);
    await b.run('after an unclean release');
    expect(idleChecks(b.fake)).toBe(2);
    await sleep(CLEAN_HANDOVER_MS + 200);
    await b.run('long after a clean release');
    expect(idleChecks(b.fake)).toBe(3);
  });

  test('the box is handed over as soon as it has answered: the next job runs there while the last one is still storing its images', async ({
    redisPrefix,
  }) => {
    const b = await box(redisPrefix);
    const firstId = crypto.randomUUID();
    b.results.gated.add(firstId);
    const first = b.run('first', firstId);
    await expect.poll(() => b.results.storing).toBe(1);
    const second = b.run('second');
    // The box has already answered the second job while the first still stores its result.
    await expect.poll(() => b.fake.generations, { timeout: 5000 }).toBe(2);
    expect(b.results.storing).toBe(1);
    b.results.open();
    await Promise.all([first, second]);
  });
});
