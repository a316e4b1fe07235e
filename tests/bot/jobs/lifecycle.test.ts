import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { JobLifecycle } from '../../../bot/jobs/lifecycle.js';
import { QueueBoard } from '../../../bot/jobs/queue-board.js';
import type { JobFailure } from '../../../core/failures.js';
import type { JobResult } from '../../../core/generation.js';
import type { QueueSnapshot } from '../../../core/io/queue-position.js';
import { ResultStore } from '../../../core/io/results.js';
import type { StoredJob } from '../../../core/ports.js';
import type { SettleOutcome } from '../../../core/settle.js';
import { bombPng } from '../../fixtures/png.js';
import { REF, REQUEST, recordingEdits, silent, storedJob } from './doubles.js';

beforeEach(() => {
  vi.useFakeTimers({ now: new Date('2026-11-23T12:00:00Z') });
});
afterEach(() => {
  vi.useRealTimers();
});

const JOB = '00000000-0000-4000-8000-000000000001';
/** Key names only (no Redis is reached): the bot checks a result's keys against them. */
const KEYS = new ResultStore(null as never, 'p', 60);
const RESULT: JobResult = {
  backend: 'a1111',
  seed: 1,
  width: 64,
  height: 64,
  imageKeys: [KEYS.imageKey(JOB, 0)],
  runMs: 1200,
  costUsd: 0,
  attempts: [{ backend: 'a1111', outcome: 'succeeded', seconds: 1.2, costUsd: 0 }],
};

/** The job's cancel flag (core/io/cancel.ts cancelFlagKey). */
const FLAG = `p:cancelled:${JOB}`;

/** The store settles a job once, like the status-guarded statement; `settledElsewhere` plays another bot process winning. */
function setup(
  o: {
    ownsGuild?: boolean;
    queueState?: string;
    failure?: JobFailure;
    images?: (Buffer | null)[];
    handBack?: (jobId: string) => Promise<void>;
    price?: (jobId: string, outcome: SettleOutcome) => Promise<SettleOutcome>;
    /** The member pressed Cancel before the job was settled: its cancel flag is set. */
    cancelled?: boolean;
  } = {},
) {
  const settles: SettleOutcome[] = [];
  const store = {
    settledElsewhere: false,
    settled: false,
    marked: [] as string[],
    markCalls: 0,
    async settle(_id: string, outcome: SettleOutcome): Promise<StoredJob | null> {
      settles.push(outcome);
      if (store.settled || store.settledElsewhere) return null;
      store.settled = true;
      return storedJob({ status: outcome.status, result: outcome.status === 'succeeded' ? outcome.result : null });
    },
    async markRunning(started: readonly { jobId: string }[]) {
      store.markCalls++;
      store.marked.push(...started.map((s) => s.jobId));
    },
  };
  const posted: { job: StoredJob; images: Buffer[] | null }[] = [];
  const removed: string[] = [];
  const edits = recordingEdits();
  const reads: string[][] = [];
  const keysRead: string[] = [];
  /** Every multi-key read, as the one Redis command it is. */
  const commands: string[][] = [];
  const read = async (ids: readonly string[]): Promise<QueueSnapshot> => {
    reads.push([...ids]);
    return {
      places: new Map(ids.map((id) => [id, { state: 'waiting', ahead: 0 } as const])),
      active: 0,
      waiting: ids.length,
      statuses: [],
    };
  };
  const board = new QueueBoard({ positions: { read }, log: silent, now: () => Date.now(), ownsGuild: () => true });
  const lifecycle = new JobLifecycle({
    store,
    results: {
      get: async (key) => (keysRead.push(key), null),
      // A PNG's header is all the bot reads of a result before it is posted.
      getMany: async (keys) => {
        keysRead.push(...keys);
        commands.push([...keys]);
        const images = o.images ?? [];
        return keys.map((k, i) => (k === FLAG ? (o.cancelled ? Buffer.from('1') : null) : o.images ? (images[i] ?? null) : bombPng(64)));
      },
      getFailure: async () => o.failure ?? null,
      ownsResultKeys: (jobId, result) => KEYS.ownsResultKeys(jobId, result),
      previewKey: (jobId) => KEYS.previewKey(jobId),
    },
    queue: {
      getJob: async () => (o.queueState === undefined ? undefined : { getState: async () => o.queueState! }),
      remove: async (id: string) => void removed.push(id),
    },
    board,
    post: { post: async (job, images) => void posted.push({ job, images }) },
    edits,
    log: silent,
    now: () => Date.now(),
    ownsGuild: () => o.ownsGuild ?? true,
    cancelFlag: async () => FLAG,
    editIntervalMs: 1500,
    ...(o.handBack ? { handBack: o.handBack } : {}),
    ...(o.price ? { price: o.price } : {}),
  });
  lifecycle.begin(JOB, 'g1', 'c1', REF, REQUEST);
  return { lifecycle, store, settles, posted, edits, board, reads, removed, keysRead, commands };
}

const progress = (step: number) => ({ backend: 'a1111', step, total: 30, fraction: step / 30 });

describe('a job from the queue to its settle', () => {
  test('a completed job is settled once as a success and posted with its images, however many times its end is heard', async () => {
    const { lifecycle, settles, posted } = setup();
    lifecycle.completed(JOB, JSON.stringify(RESULT));
    lifecycle.completed(JOB, JSON.stringify(RESULT));
    await vi.advanceTimersByTimeAsync(0);
    expect(settles.map((s) => s.status)).toEqual(['succeeded', 'succeeded']);
    expect(posted).toHaveLength(1);
    expect(posted[0]!.images).toHaveLength(1);
    expect(lifecycle.isFollowing(JOB)).toBe(false);
  });

  test('once Postgres holds the outcome, BullMQ lets go of the job (its retention is tied to settlement)', async () => {
    const { lifecycle, removed } = setup();
    lifecycle.completed(JOB, JSON.stringify(RESULT));
    await vi.advanceTimersByTimeAsync(0);
    expect(removed).toEqual([JOB]);
  });

  test('a process that does not follow a job never settles it from its events: the follower (or the sweep) is its one settler', async () => {
    const { lifecycle, settles, posted } = setup({ queueState: 'failed' });
    const other = '00000000-0000-4000-8000-0000000000ff';
    lifecycle.completed(other, JSON.stringify(RESULT));
    lifecycle.failed(other);
    await vi.advanceTimersByTimeAsync(0);
    expect(settles).toEqual([]);
    expect(posted).toEqual([]);
  });

  test('a result naming keys that are not its job’s own (another job’s images, an input) is refused: nothing is read, it settles as malformed', async () => {
    for (const foreign of [
      { ...RESULT, imageKeys: [KEYS.imageKey('00000000-0000-4000-8000-0000000000ff', 0)] },
      { ...RESULT, imageKeys: [KEYS.inputKey('someone-else', 'original')] },
      { ...RESULT, imageKeys: [KEYS.imageKey(JOB, 0), KEYS.imageKey(JOB, 1)], gridKey: 'p:input:x:image' },
    ]) {
      const { lifecycle, settles, posted, keysRead } = setup();
      lifecycle.completed(JOB, JSON.stringify(foreign));
      await vi.advanceTimersByTimeAsync(0);
      expect(keysRead).toEqual([]);
      expect(settles).toMatchObject([{ status: 'failed', code: 'invalid_payload' }]);
      expect(posted[0]!.images).toBeNull();
    }
  });

  test('a job the member cancelled before it was settled ends as cancelled: refunded, posted without its images, its attempts booked; the flag is read with the images, in one command', async () => {
    const { lifecycle, settles, posted, commands } = setup({ cancelled: true });
    lifecycle.completed(JOB, JSON.stringify(RESULT));
    await vi.advanceTimersByTimeAsync(0);
    expect(commands).toEqual([[...RESULT.imageKeys, FLAG]]);
    expect(settles).toEqual([{ status: 'cancelled', attempts: RESULT.attempts }]);
    expect(posted).toHaveLength(1);
    expect(posted[0]!.job.status).toBe('cancelled');
    expect(posted[0]!.images).toBeNull();
  });

  test('progress naming a preview key that is not the job’s own is shown without it; its own preview is read', async () => {
    const { lifecycle, keysRead } = setup();
    lifecycle.progressed(JOB, { ...progress(3), previewKey: KEYS.inputKey('other', 'original') });
    await vi.advanceTimersByTimeAsync(3000);
    expect(keysRead).toEqual([]);
    lifecycle.progressed(JOB, { ...progress(4), previewKey: KEYS.previewKey(JOB) });
    await vi.advanceTimersByTimeAsync(3000);
    expect(keysRead).toEqual([KEYS.previewKey(JOB)]);
  });

  test('a job whose images left Redis before they were fetched is refunded as expired and posted as such', async () => {
    const { lifecycle, settles, posted } = setup({ images: [null] });
    lifecycle.completed(JOB, JSON.stringify(RESULT));
    await vi.advanceTimersByTimeAsync(0);
    expect(settles[0]).toMatchObject({ status: 'failed', code: 'expired' });
    expect(posted[0]!.images).toBeNull();
  });

  test('a result whose image declares more pixels than the output cap is refunded as malformed, saying why, and posted without being decoded', async () => {
    // 6000×6000 (36 MP) in a tiny file: what a guild's own worker could write under its result keys.
    const { lifecycle, settles, posted } = setup({ images: [bombPng(6000)] });
    lifecycle.completed(JOB, JSON.stringify(RESULT));
    await vi.advanceTimersByTimeAsync(0);
    expect(settles).toEqual([
      {
        status: 'failed',
        code: 'invalid_payload',
        message: expect.stringMatching(/image 1 declares 6000×6000, over the 16 MP cap/),
        attempts: RESULT.attempts,
      },
    ]);
    expect(posted.map((p) => [p.job.status, p.images])).toEqual([['failed', null]]);
  });

  test('a failed attempt with a retry to come settles nothing; the final failure settles with the worker’s reason', async () => {
    const retry = setup({ queueState: 'delayed' });
    retry.lifecycle.failed(JOB);
    await vi.advanceTimersByTimeAsync(0);
    expect(retry.settles).toEqual([]);
    expect(retry.lifecycle.isFollowing(JOB)).toBe(true);

    const failure: JobFailure = { code: 'rejected', message: 'the image backend refused the request.', attempts: [] };
    const final = setup({ queueState: 'failed', failure });
    final.lifecycle.failed(JOB);
    await vi.advanceTimersByTimeAsync(0);
    expect(final.settles).toEqual([{ status: 'failed', code: 'rejected', message: failure.message, attempts: [] }]);
    expect(final.posted).toHaveLength(1);
  });

  test('when another bot process settles the job first, this one stops following it: its pending progress edit is never sent', async () => {
    const { lifecycle, store, edits, posted } = setup();
    lifecycle.progressed(JOB, progress(1));
    await vi.advanceTimersByTimeAsync(0);
    lifecycle.progressed(JOB, progress(2));
    store.settledElsewhere = true;
    lifecycle.completed(JOB, JSON.stringify(RESULT));
    await vi.advanceTimersByTimeAsync(10_000);
    expect(edits.sent.map((e) => e.content.split('\n')[1])).toEqual(['Generating on a1111: step 1/30 (3 %)']);
    expect(posted).toEqual([]);
    expect(lifecycle.isFollowing(JOB)).toBe(false);
  });

  test('the result waits for a progress edit under way, so it is always the last thing the reply shows', async () => {
    const { lifecycle, edits, posted } = setup();
    edits.delayMs = 500;
    lifecycle.progressed(JOB, progress(29));
    await vi.advanceTimersByTimeAsync(1);
    lifecycle.completed(JOB, JSON.stringify(RESULT));
    await vi.advanceTimersByTimeAsync(0);
    expect(posted).toEqual([]);
    await vi.advanceTimersByTimeAsync(500);
    expect(edits.sent).toHaveLength(1);
    expect(posted).toHaveLength(1);
  });

  test('progress of a job in a guild another shard serves is left to that shard', async () => {
    const { lifecycle, edits } = setup({ ownsGuild: false });
    lifecycle.progressed(JOB, progress(1));
    await vi.advanceTimersByTimeAsync(5000);
    expect(edits.sent).toEqual([]);
  });

  test('a job back in the queue after a failed attempt shows its place again', async () => {
    const { lifecycle, board, reads, edits } = setup();
    lifecycle.started(JOB);
    await vi.advanceTimersByTimeAsync(5000);
    expect(reads).toEqual([]);
    lifecycle.waiting(JOB);
    board.requestRefresh();
    await vi.advanceTimersByTimeAsync(2000);
    expect(reads).toEqual([[JOB]]);
    expect(edits.sent.map((e) => e.content.split('\n')[1])).toEqual([
      'Queued: you are next. No time estimate: no worker is available to run jobs right now.',
    ]);
  });

  test('starts are written as running together within a second; a job that finished first is never written; others’ jobs are left to their follower', async () => {
    const { lifecycle, store } = setup();
    const other = '00000000-0000-4000-8000-000000000002';
    const quick = '00000000-0000-4000-8000-000000000003';
    lifecycle.begin(other, 'g1', 'c1', REF, REQUEST);
    lifecycle.begin(quick, 'g1', 'c1', REF, REQUEST);
    lifecycle.started(JOB);
    lifecycle.started(other);
    lifecycle.started(quick);
    lifecycle.started('00000000-0000-4000-8000-000000000009');
    lifecycle.completed(quick, JSON.stringify(RESULT));
    await vi.advanceTimersByTimeAsync(999);
    expect(store.marked).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(store.marked).toEqual([JOB, other]);
    expect(store.markCalls).toBe(1);
  });
});

describe("a guild's own boxes", () => {
  test('a job its guild worker gave back is handed on to the shared queue: not settled, not refunded, nothing posted', async () => {
    const handed: string[] = [];
    const { lifecycle, settles, posted } = setup({
      queueState: 'failed',
      failure: { code: 'handed_back', message: 'x', attempts: [] },
      handBack: async (id) => void handed.push(id),
    });
    lifecycle.failed(JOB);
    await vi.advanceTimersByTimeAsync(0);
    expect(handed).toEqual([JOB]);
    expect(settles).toEqual([]);
    expect(posted).toEqual([]);
    expect(lifecycle.isFollowing(JOB)).toBe(true);
  });

  test('the outcome is booked where the job ran before it is settled', async () => {
    const { lifecycle, settles } = setup({
      price: async (_id, outcome) => (outcome.status === 'succeeded' ? { ...outcome, result: { ...outcome.result, costUsd: 0 } } : outcome),
    });
    lifecycle.completed(JOB, JSON.stringify({ ...RESULT, costUsd: 0.5 }));
    await vi.advanceTimersByTimeAsync(0);
    expect(settles).toMatchObject([{ status: 'succeeded', result: { costUsd: 0 } }]);
  });
});
