import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { Reconciler } from '../../../bot/jobs/reconcile.js';
import type { JobPayload } from '../../../core/generation.js';
import type { JobPlace, QueueSnapshot } from '../../../core/io/queue-position.js';
import type { StoredJob } from '../../../core/ports.js';
import type { EarlierTries, SettleOutcome } from '../../../core/settle.js';
import { silent, storedJob } from './doubles.js';

beforeEach(() => {
  vi.useFakeTimers({ now: new Date('2026-11-23T12:00:00Z') });
});
afterEach(() => {
  vi.useRealTimers();
});

const id = (n: number) => `00000000-0000-4000-8000-00000000000${n}`;

/** Postgres holds `jobs`; BullMQ knows `bull` (state, finishedOn, returnvalue); `places` is the batched position read. */
function setup(
  jobs: StoredJob[],
  bull: Record<string, { state: string; finishedOn?: number; returnvalue?: unknown }>,
  places: Record<string, JobPlace> = {},
  tries: Record<string, EarlierTries> = {},
) {
  const log: string[] = [];
  const outcomes: SettleOutcome[] = [];
  const added: { name: string; payload: JobPayload; opts: unknown }[] = [];
  const following = new Set<string>();
  const r = new Reconciler({
    store: {
      listUndelivered: async () => jobs,
      claimDelivery: async (jobId) => {
        log.push(`claim ${jobId}`);
        return jobs.find((j) => j.id === jobId) ?? null;
      },
      rememberReply: async (jobId, messageId) => void log.push(`remember ${jobId} ${messageId}`),
    },
    queue: {
      getJob: (async (jobId: string) => {
        const b = bull[jobId];
        return b ? { getState: async () => b.state, finishedOn: b.finishedOn, returnvalue: b.returnvalue } : undefined;
      }) as never,
      add: (async (name: string, payload: JobPayload, opts: unknown) => void added.push({ name, payload, opts })) as never,
    },
    positions: {
      read: async (ids: readonly string[]): Promise<QueueSnapshot> => ({
        places: new Map(ids.map((i) => [i, places[i] ?? { state: 'other' }])),
        active: 0,
        waiting: 0,
        statuses: [],
      }),
    },
    lifecycle: {
      deliver: async (job) => void log.push(`deliver ${job.id}`),
      follow: (job, waiting) => {
        // Jobs of guild `g-other` are served by another process: following them does nothing here.
        if (job.guildId !== 'g-other') following.add(job.id);
        log.push(`follow ${job.id}${waiting ? ' waiting' : ''}`);
      },
      isFollowing: (jobId) => following.has(jobId),
      replyIdOf: (jobId) => (jobId === id(9) ? 'reply-9' : undefined),
      finishedUnheard: (jobId, state) => void log.push(`settle ${jobId} ${state}`),
      settle: async (jobId, outcome) => {
        log.push(`settle ${jobId} ${outcome.status}${outcome.status === 'failed' ? ` ${outcome.code}` : ''}`);
        outcomes.push(outcome);
        return true;
      },
    },
    earlierTries: async (jobId) => tries[jobId] ?? { failure: null, keptAttempts: null },
    log: silent,
    now: () => Date.now(),
  });
  return { r, log, added, following, outcomes };
}

describe('the sweep', () => {
  test('a settled, undelivered job is claimed and delivered', async () => {
    const { r, log } = setup([storedJob({ id: id(1), status: 'succeeded' })], {});
    await r.sweep();
    expect(log).toEqual([`claim ${id(1)}`, `deliver ${id(1)}`]);
  });

  test('a job still waiting is followed again, with position updates; one in its retry backoff without', async () => {
    const { r, log } = setup(
      [storedJob({ id: id(1) }), storedJob({ id: id(2) })],
      {},
      { [id(1)]: { state: 'waiting', ahead: 3 }, [id(2)]: { state: 'delayed' } },
    );
    await r.sweep();
    expect(log).toEqual([`follow ${id(1)} waiting`, `follow ${id(2)}`]);
  });

  test('a job that finished while no bot listened is settled as its event would have settled it', async () => {
    const { r, log } = setup([storedJob({ id: id(1) }), storedJob({ id: id(2) })], {
      [id(1)]: { state: 'completed', finishedOn: Date.now() - 60_000 },
      [id(2)]: { state: 'failed', finishedOn: Date.now() - 60_000 },
    });
    await r.sweep();
    expect(log).toEqual([`follow ${id(1)}`, `settle ${id(1)} completed`, `follow ${id(2)}`, `settle ${id(2)} failed`]);
  });

  test('a job that finished moments ago is settled by its one settler: left to its event here, settled here when this process only now follows it, left to the shard serving its guild', async () => {
    const { r, log, following } = setup(
      [storedJob({ id: id(1) }), storedJob({ id: id(2) }), storedJob({ id: id(3), guildId: 'g-other' })],
      {
        [id(1)]: { state: 'completed', finishedOn: Date.now() - 1000 },
        [id(2)]: { state: 'completed', finishedOn: Date.now() - 1000 },
        [id(3)]: { state: 'completed', finishedOn: Date.now() - 1000 },
      },
    );
    following.add(id(1));
    await r.sweep();
    expect(log).toEqual([`follow ${id(1)}`, `follow ${id(2)}`, `settle ${id(2)} completed`, `follow ${id(3)}`]);
  });

  test('a job left unfinished past the window (a bot down for days) is given up and refunded, never run again', async () => {
    const old = new Date(Date.now() - 3 * 86_400_000);
    const { r, log, added } = setup(
      [storedJob({ id: id(1), createdAt: old }), storedJob({ id: id(2), createdAt: old }), storedJob({ id: id(3), createdAt: old })],
      { [id(2)]: { state: 'completed', finishedOn: Date.now() - 86_400_000 } },
      { [id(3)]: { state: 'waiting', ahead: 0 } },
    );
    await r.sweep();
    expect(added).toEqual([]);
    expect(log).toEqual([
      `settle ${id(1)} failed abandoned`,
      `follow ${id(2)}`,
      `settle ${id(2)} completed`,
      `settle ${id(3)} failed abandoned`,
    ]);
  });

  test('a job given up past the window still books what its earlier tries billed (a retry that was waiting out its backoff)', async () => {
    const billed = [{ backend: 'replicate', outcome: 'failed' as const, seconds: 4, costUsd: 0.02 }];
    const { r, outcomes } = setup(
      [storedJob({ id: id(1), createdAt: new Date(Date.now() - 3 * 86_400_000) })],
      {},
      { [id(1)]: { state: 'delayed' } },
      { [id(1)]: { failure: { code: 'all_backends_failed', message: 'x', attempts: billed }, keptAttempts: null } },
    );
    await r.sweep();
    expect(outcomes).toEqual([{ status: 'failed', code: 'abandoned', message: expect.any(String), attempts: billed }]);
  });

  test('the sweep reads every open job page by page, however many there are', async () => {
    const jobs = Array.from({ length: 1200 }, (_, n) =>
      storedJob({
        id: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
        status: 'failed',
        createdAt: new Date(Date.now() - 1000 + n),
      }),
    );
    const { r, log } = setup([], {});
    const pages: (string | null)[] = [];
    (r as unknown as { o: { store: { listUndelivered: unknown } } }).o.store.listUndelivered = async (
      after: { id: string } | null,
      limit: number,
    ) => {
      pages.push(after?.id ?? null);
      const from = after ? jobs.findIndex((j) => j.id === after.id) + 1 : 0;
      return jobs.slice(from, from + limit);
    };
    await r.sweep();
    expect(pages).toEqual([null, jobs[499]!.id, jobs[999]!.id]);
    expect(log.filter((l) => l.startsWith('claim'))).toHaveLength(1200);
  });

  test('a job missing from the queue is re-enqueued with the same payload builder, on free backends only, once the submitter had time to add it', async () => {
    const fresh = storedJob({ id: id(1), createdAt: new Date(Date.now() - 5000) });
    const old = storedJob({ id: id(2), createdAt: new Date(Date.now() - 60_000) });
    const { r, added } = setup([fresh, old], {});
    await r.sweep();
    expect(added).toHaveLength(1);
    expect(added[0]).toMatchObject({
      name: 'txt2img',
      payload: { v: 1, jobId: id(2), guildId: 'g1', paidAllowed: false, budgetLeftUsd: 0, nsfwAllowed: false },
      opts: { jobId: id(2) },
    });
  });

  test('a reply id this process learnt is written for a job still open, so a later channel post can reply to it', async () => {
    const { r, log } = setup([storedJob({ id: id(9) })], {}, { [id(9)]: { state: 'waiting', ahead: 0 } });
    await r.sweep();
    expect(log[0]).toBe(`remember ${id(9)} reply-9`);
  });

  test('a pass under way is joined, not doubled; after stop() no pass starts', async () => {
    const { r, log } = setup([storedJob({ id: id(1), status: 'failed' })], {});
    await Promise.all([r.sweep(), r.sweep()]);
    expect(log.filter((l) => l.startsWith('claim'))).toHaveLength(1);
    await r.stop();
    await r.sweep();
    expect(log.filter((l) => l.startsWith('claim'))).toHaveLength(1);
  });
});
