import { toJobPayload } from '../../core/generation.js';
import type { Logger } from '../../core/io/logger.js';
import { enqueueJob, type GenerateQueue } from '../../core/io/queue.js';
import type { JobPlace } from '../../core/io/queue-position.js';
import type { JobStore, StoredJob } from '../../core/ports.js';
import type { JobLifecycle } from './lifecycle.js';
import type { PositionReader } from './queue-board.js';

/** How far back the sweep looks, and how many jobs one pass takes at most. */
const SWEEP_WINDOW_MS = 2 * 86_400_000;
const SWEEP_BATCH = 500;

export interface ReconcileOptions {
  store: Pick<JobStore, 'listUndelivered' | 'claimDelivery' | 'rememberReply'>;
  queue: Pick<GenerateQueue, 'getJob' | 'add'>;
  positions: PositionReader;
  lifecycle: Pick<JobLifecycle, 'deliver' | 'follow' | 'isFollowing' | 'replyIdOf' | 'finishedUnheard'>;
  log: Logger;
  now: () => number;
  /** How often undelivered jobs are reconciled against BullMQ (missed events, restarts); default 10 s. */
  sweepIntervalMs?: number;
  /** A delivery claim older than this is taken to belong to a dead process (default 30 s). */
  claimStaleMs?: number;
}

/**
 * The sweep: every undelivered job in Postgres is held against BullMQ, so whatever happened while
 * no bot listened (a restart, missed events, a lost queue entry) ends the way its events would
 * have ended it: settled jobs are delivered, finished ones settled, waiting ones followed again,
 * lost ones re-enqueued.
 */
export class Reconciler {
  private readonly claimStaleMs: number;
  private timer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly o: ReconcileOptions) {
    this.claimStaleMs = o.claimStaleMs ?? 30_000;
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
    const now = this.o.now();
    const jobs = await this.o.store.listUndelivered(new Date(now - SWEEP_WINDOW_MS), SWEEP_BATCH);
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
      const known = this.o.lifecycle.replyIdOf(job.id);
      if (!job.replyMessageId && known) await this.o.store.rememberReply(job.id, known);
      const place = places.get(job.id)?.state;
      if (place === 'waiting' || place === 'delayed') {
        this.o.lifecycle.follow(job, place === 'waiting');
        continue;
      }
      const bull = await this.o.queue.getJob(job.id);
      if (!bull) {
        // Give the submitter time to enqueue before deciding the queue entry is lost.
        if (now - job.createdAt.getTime() < this.claimStaleMs) continue;
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
      // A job this process follows that finished moments ago has its event on the way or its
      // delivery queued; settling it again here would only fetch its images twice.
      const inFlight = this.o.lifecycle.isFollowing(job.id) && this.o.now() - (bull.finishedOn ?? 0) < this.claimStaleMs;
      this.o.lifecycle.follow(job, state === 'waiting' || state === 'prioritized');
      if (inFlight) continue;
      if (state === 'completed' || state === 'failed') this.o.lifecycle.finishedUnheard(job.id, state, bull.returnvalue);
    }
  }
}
