import { toJobPayload } from '../../core/generation.js';
import type { Logger } from '../../core/io/logger.js';
import { enqueueJob, type GenerateQueue } from '../../core/io/queue.js';
import type { JobPlace } from '../../core/io/queue-position.js';
import type { JobStore, StoredJob, SweepCursor } from '../../core/ports.js';
import { abandoned, type EarlierTries } from '../../core/settle.js';
import type { JobLifecycle } from './lifecycle.js';
import type { PositionReader } from './queue-board.js';

/** Jobs read per page: each page is one indexed statement, and one Redis round trip for their places. */
const SWEEP_PAGE = 500;
/**
 * An unsettled job older than this that BullMQ no longer runs is given up (failed, refunded) instead
 * of run again. BullMQ keeps finished jobs longer than this (core/io/queue.ts FINISHED_JOB_RETENTION_S)
 * until their bot has settled them, so within the window a job missing from the queue was never run.
 */
const SWEEP_WINDOW_MS = 2 * 86_400_000;

export interface ReconcileOptions {
  store: Pick<JobStore, 'listUndelivered' | 'claimDelivery' | 'rememberReply'>;
  queue: Pick<GenerateQueue, 'getJob' | 'add'>;
  positions: PositionReader;
  lifecycle: Pick<JobLifecycle, 'deliver' | 'follow' | 'isFollowing' | 'replyIdOf' | 'finishedUnheard' | 'settle'>;
  /** What a job's earlier tries billed (ResultStore.earlierTries, in the space that holds it): booked when it is given up. */
  earlierTries: (jobId: string) => Promise<EarlierTries>;
  log: Logger;
  now: () => number;
  /** How often undelivered jobs are reconciled against BullMQ (missed events, restarts); default 10 s. */
  sweepIntervalMs?: number;
  /**
   * A delivery claim older than this is taken to belong to a dead process; a job finished longer
   * ago than this that nobody settled is settled here (default 30 s).
   */
  claimStaleMs?: number;
  /** See {@link SWEEP_WINDOW_MS}. */
  windowMs?: number;
}

/**
 * The sweep: every job whose delivery is not finished is held against BullMQ, so whatever happened
 * while no bot listened (a restart, missed events, a lost queue entry) ends the way its events
 * would have ended it: settled jobs are delivered (when their next try is due), finished ones
 * settled, waiting ones followed again, lost ones re-enqueued, and ones past the window given up
 * and refunded. It reads page after page from a partial index that holds only these jobs, so its
 * cost follows the number of open jobs, not the size of the table.
 */
export class Reconciler {
  private readonly claimStaleMs: number;
  private readonly windowMs: number;
  private timer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly o: ReconcileOptions) {
    this.claimStaleMs = o.claimStaleMs ?? 30_000;
    this.windowMs = o.windowMs ?? SWEEP_WINDOW_MS;
  }

  /** The first sweep, then one every sweepIntervalMs. */
  async start(): Promise<void> {
    await this.sweep();
    this.timer = setInterval(() => void this.sweep(), this.o.sweepIntervalMs ?? 10_000);
    this.timer.unref();
  }

  /** Stops sweeping; resolves when a sweep under way has finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.sweeping;
  }

  /** One pass (a pass already under way is joined, not doubled). */
  sweep(): Promise<void> {
    if (this.sweeping || this.stopped) return this.sweeping ?? Promise.resolve();
    this.sweeping = this.sweepOnce()
      .catch((err: unknown) => this.o.log.warn({ err }, 'reconcile failed'))
      .finally(() => {
        this.sweeping = undefined;
      });
    return this.sweeping;
  }

  private async sweepOnce(): Promise<void> {
    let after: SweepCursor | null = null;
    for (;;) {
      const jobs = await this.o.store.listUndelivered(after, SWEEP_PAGE);
      await this.page(jobs);
      const last = jobs.at(-1);
      if (jobs.length < SWEEP_PAGE || !last || this.stopped) return;
      after = { createdAt: last.createdAt, id: last.id };
    }
  }

  private async page(jobs: StoredJob[]): Promise<void> {
    const now = this.o.now();
    const settled = (j: StoredJob) => j.status === 'succeeded' || j.status === 'failed' || j.status === 'cancelled';
    // One round trip tells which open jobs are still waiting; only the others need a closer look.
    let places = new Map<string, JobPlace>();
    const open = jobs.filter((j) => !settled(j)).map((j) => j.id);
    if (open.length > 0)
      places = await this.o.positions.read(open).then(
        (snap) => snap.places,
        () => places,
      );
    for (const job of jobs) {
      if (this.stopped) return;
      if (settled(job)) {
        const claimed = await this.o.store.claimDelivery(job.id, this.claimStaleMs);
        if (claimed) await this.o.lifecycle.deliver(claimed, null);
        continue;
      }
      const expired = now - job.createdAt.getTime() > this.windowMs;
      const known = this.o.lifecycle.replyIdOf(job.id);
      if (!job.replyMessageId && known) await this.o.store.rememberReply(job.id, known);
      const place = places.get(job.id)?.state;
      if (place === 'waiting' || place === 'delayed') {
        if (expired) await this.abandon(job, true);
        else this.o.lifecycle.follow(job, place === 'waiting');
        continue;
      }
      const bull = await this.o.queue.getJob(job.id);
      if (!bull) {
        // Give the submitter time to enqueue before deciding the queue entry is lost.
        if (now - job.createdAt.getTime() < this.claimStaleMs) continue;
        // Past the window a missing entry may be a finished job BullMQ let go while no bot settled it:
        // never run it again.
        if (expired) {
          await this.abandon(job, false);
          continue;
        }
        // Rare path (queue entry lost): without a fresh budget and policy check, free backends only
        // and nothing the classifier flags.
        await enqueueJob(
          this.o.queue,
          toJobPayload({ jobId: job.id, guildId: job.guildId, request: job.request }, { budgetLeftUsd: 0, nsfwAllowed: false }),
        );
        this.o.log.warn({ jobId: job.id }, 're-enqueued a job missing from the queue');
        continue;
      }
      const state = await bull.getState();
      if (expired && (state === 'waiting' || state === 'prioritized' || state === 'delayed')) {
        await this.abandon(job, true);
        continue;
      }
      const wasFollowing = this.o.lifecycle.isFollowing(job.id);
      this.o.lifecycle.follow(job, state === 'waiting' || state === 'prioritized');
      if (state !== 'completed' && state !== 'failed') continue;
      // One settler per job, so no edit of its reply lands after the result: the process following
      // it. One that followed it already has the event on the way; one that serves its guild and
      // only now follows it (after a restart) missed the event and settles it here; a process of
      // another guild's shard leaves it to that shard unless it stays unsettled past claimStaleMs.
      const newlyOurs = !wasFollowing && this.o.lifecycle.isFollowing(job.id);
      if (!newlyOurs && now - (bull.finishedOn ?? now) < this.claimStaleMs) continue;
      this.o.lifecycle.finishedUnheard(job.id, state, bull.returnvalue);
    }
  }

  /** Past the window: out of the queue if it still waits there, then settled as failed and refunded, what it billed booked. */
  private async abandon(job: StoredJob, queued: boolean): Promise<void> {
    if (queued) {
      const bull = await this.o.queue.getJob(job.id);
      // Picked up meanwhile: a worker runs it, and its end settles it.
      if (
        bull &&
        (await bull.remove().then(
          () => false,
          () => true,
        ))
      )
        return;
    }
    this.o.log.warn(
      { jobId: job.id, ageMs: this.o.now() - job.createdAt.getTime() },
      'gave up a job left unfinished past the sweep window',
    );
    await this.o.lifecycle.settle(job.id, abandoned(await this.o.earlierTries(job.id)));
  }
}
