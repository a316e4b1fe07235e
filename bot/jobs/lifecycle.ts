import type { RawFile } from 'discord.js';
import type { FirstAnswer } from '../../commands/context.js';
import type { GenerationRequest, ParsedJobResult } from '../../core/generation.js';
import { jobProgressSchema, parseJobResult } from '../../core/generation.js';
import { refusedOutputImage } from '../../core/io/image-sniff.js';
import type { Logger } from '../../core/io/logger.js';
import type { ResultStore } from '../../core/io/results.js';
import type { InteractionRef, JobStore, StoredJob } from '../../core/ports.js';
import { completedOutcome, failedOutcome, failureIsFinal, type SettleOutcome } from '../../core/settle.js';
import { type LiveEdits, LiveMessage } from './live-message.js';
import type { PostResult } from './post-result.js';
import type { BoardEntry, QueueBoard } from './queue-board.js';
import { progressBody } from './render.js';

/** The queue's events this room reacts to (BullMQ's QueueEvents emits them). */
export interface QueueEventSource {
  on(event: 'progress', fn: (e: { jobId: string; data: unknown }) => void): unknown;
  on(event: 'active' | 'failed' | 'removed' | 'waiting', fn: (e: { jobId: string }) => void): unknown;
  on(event: 'completed', fn: (e: { jobId: string; returnvalue: unknown }) => void): unknown;
}

/** Where BullMQ has a job now (undefined when it no longer knows it); and letting go of a settled one. */
export interface JobStates {
  getJob(jobId: string): Promise<{ getState(): Promise<string> } | undefined>;
  remove(jobId: string): Promise<unknown>;
}

export interface LifecycleOptions {
  store: Pick<JobStore, 'settle' | 'markRunning'>;
  results: Pick<ResultStore, 'get' | 'getMany' | 'getFailure' | 'ownsResultKeys' | 'previewKey'>;
  queue: JobStates;
  board: QueueBoard;
  post: Pick<PostResult, 'post'>;
  edits: LiveEdits;
  log: Logger;
  now: () => number;
  /** true when this process's gateway shard(s) serve the guild; others leave its reply alone. */
  ownsGuild: (guildId: string) => boolean;
  /** Least gap between two edits of one message (default 1.5 s). */
  editIntervalMs?: number;
  /** How long starts are gathered before they are written as one statement (default 1 s). */
  markRunningEveryMs?: number;
  /** Interaction tokens last 15 minutes; past this age the bot edits and posts with its own token (default 14 min). */
  tokenLifetimeMs?: number;
  /**
   * A guild's own worker gave the job back (failure code `handed_back`): move it to the shared
   * queue instead of settling it. Without it, such a job fails like any other.
   */
  handBack?: (jobId: string) => Promise<void>;
  /** Books an outcome where the job ran (a guild's own box: at the guild's price, nothing to the operator). */
  price?: (jobId: string, outcome: SettleOutcome) => Promise<SettleOutcome>;
  /** The key of the job's cancel flag in the space that holds it (core/io/cancel.ts cancelFlagKey), read with its images. */
  cancelFlag: (jobId: string) => Promise<string>;
}

/**
 * A job's life after it was admitted, as this process follows it: queue events move it from
 * waiting to running to finished; a finished job is settled and handed to PostResult. Only the
 * process following a job (the one that admitted it, or that serves its guild after a restart)
 * settles it from its events, after the edits of its reply already started, so no progress edit of
 * any process lands after the result; the sweep settles what nobody followed. The store's status
 * guard still decides, once, if two ever try. Once Postgres holds the outcome, BullMQ lets go of
 * the job: its retention is tied to settlement, not to a count that a busy day could trim.
 */
export class JobLifecycle {
  private readonly followed = new Map<string, BoardEntry>();
  private readonly editIntervalMs: number;
  private readonly tokenLifetimeMs: number;
  /** Followed jobs a worker took, and when, not yet written as running. */
  private readonly startedAt = new Map<string, number>();
  /** Jobs being moved between queues (see moving()). */
  private readonly inMove = new Set<string>();
  private markTimer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly o: LifecycleOptions) {
    this.editIntervalMs = o.editIntervalMs ?? 1500;
    this.tokenLifetimeMs = o.tokenLifetimeMs ?? 14 * 60_000;
  }

  /** Subscribes to the queue's events. */
  listen(events: QueueEventSource): void {
    events.on('progress', ({ jobId, data }) => this.progressed(jobId, data));
    events.on('active', ({ jobId }) => this.started(jobId));
    events.on('completed', ({ jobId, returnvalue }) => this.completed(jobId, returnvalue));
    events.on('failed', ({ jobId }) => this.failed(jobId));
    events.on('removed', ({ jobId }) => this.left(jobId));
    events.on('waiting', ({ jobId }) => this.waiting(jobId));
  }

  /**
   * Starts following a job before it is enqueued, so no event of it can be missed or misordered.
   * `paidAllowed`: the guild had budget for paid providers at admission (its reply may name one and its price).
   */
  begin(jobId: string, guildId: string, channelId: string, ref: InteractionRef, request: GenerationRequest, paidAllowed = true): void {
    this.track({ jobId, guildId, channelId, ref, request, since: this.o.now(), paidAllowed });
  }

  /** Nothing edits the job's reply (place, progress, result) before `acknowledged` settles. */
  afterAcknowledged(jobId: string, acknowledged: Promise<void>): void {
    this.followed.get(jobId)?.live.after(acknowledged);
  }

  /** Stops following a job that never made it into the queue. */
  forget(jobId: string): void {
    this.release(jobId);
  }

  /**
   * The freshly queued job's reply will show its place and ETA (in a moment, read together with the
   * jobs queued at the same time; not at all if it has finished by then). Its next edit waits its
   * turn from now, so progress never comes before the place. With `answer`, nothing has been sent
   * to Discord yet and the place is the interaction's first answer.
   */
  showQueued(jobId: string, answer?: FirstAnswer): void {
    const e = this.followed.get(jobId);
    if (!e) return;
    e.live.holdNextEdit();
    this.o.board.showFirst(e, answer);
  }

  /** After a restart: follow an open job of a guild this process serves; a waiting one gets position updates again. */
  follow(job: StoredJob, waiting: boolean): void {
    if (this.followed.has(job.id) || !this.o.ownsGuild(job.guildId)) return;
    const e = this.track({
      jobId: job.id,
      guildId: job.guildId,
      channelId: job.channelId,
      ref: job.interaction,
      request: job.request,
      since: job.createdAt.getTime(),
      replyMessageId: job.replyMessageId,
    });
    if (waiting) {
      this.o.board.wait(e);
      this.o.board.requestRefresh();
    }
  }

  isFollowing(jobId: string): boolean {
    return this.followed.has(jobId);
  }

  /** The reply's message id, when this process learnt it (the sweep writes it to Postgres). */
  replyIdOf(jobId: string): string | undefined {
    return this.followed.get(jobId)?.live.replyMessageId;
  }

  /** A job's progress: edits of its reply take over from its place in the queue. */
  progressed(jobId: string, data: unknown): void {
    const e = this.followed.get(jobId);
    if (!e || e.live.isClosed || !this.o.ownsGuild(e.guildId)) return;
    const parsed = jobProgressSchema.safeParse(data);
    if (!parsed.success) return;
    // Progress means a worker has it, even if its `active` event was missed.
    if (e.phase !== 'running') this.o.board.run(e);
    const p = parsed.data;
    e.live.offerProgress(async () => {
      // Only the job's own preview key is read, whatever the progress names.
      const preview = p.previewKey === this.o.results.previewKey(jobId) ? await this.o.results.get(p.previewKey) : null;
      const files: RawFile[] = preview ? [{ name: 'preview.png', data: preview }] : [];
      return { body: progressBody(e.jobId, e.request, p, preview !== null), files };
    });
  }

  /**
   * A worker took the job. Its row says so within a second, in one statement for every job that
   * started meanwhile; a job that finishes first needs none (its settle writes the final status).
   * Every bot process hears every start; only the one following the job writes it.
   */
  started(jobId: string): void {
    const e = this.followed.get(jobId);
    if (e) {
      this.startedAt.set(jobId, this.o.now());
      this.markTimer ??= setTimeout(() => void this.markRunning(), this.o.markRunningEveryMs ?? 1000);
      if (!e.live.isClosed) this.o.board.run(e);
    }
    this.o.board.started(jobId);
  }

  /** The worker returned a result: the process following the job settles and posts it. */
  completed(jobId: string, returnvalue: unknown): void {
    const parsed = this.parseResult(jobId, returnvalue);
    // How long the job took, for the ETA (every process keeps it).
    if (parsed.success) this.o.board.finished({ ms: parsed.data.runMs, count: parsed.data.imageKeys.length, backend: parsed.data.backend });
    this.left(jobId);
    if (this.followed.has(jobId)) this.inOrder(jobId, () => this.complete(jobId, parsed));
  }

  /** An attempt failed; only a final failure is settled (refunded) and posted, by the process following the job. */
  failed(jobId: string): void {
    this.left(jobId);
    if (this.followed.has(jobId)) this.inOrder(jobId, () => this.fail(jobId));
  }

  /** The sweep found a job that finished while nobody listened: settle it as its event would have. */
  finishedUnheard(jobId: string, state: 'completed' | 'failed', returnvalue: unknown): void {
    if (state === 'completed') this.inOrder(jobId, () => this.complete(jobId, this.parseResult(jobId, returnvalue)));
    else this.inOrder(jobId, () => this.fail(jobId));
  }

  /** A job that finished, failed an attempt or was removed left its place (and maybe a worker slot). */
  left(jobId: string): void {
    this.startedAt.delete(jobId);
    const e = this.followed.get(jobId);
    // Removed from a guild's queue to move to the shared one: it keeps its place on the board.
    if (e && !this.inMove.delete(jobId)) this.o.board.drop(e);
    this.o.board.left(jobId);
  }

  /** The job is about to leave its queue for another (a handoff; `on` false: it stays after all): its removal must not drop it from the board. */
  moving(jobId: string, on: boolean): void {
    if (!on) this.inMove.delete(jobId);
    else if (this.followed.has(jobId)) this.inMove.add(jobId);
  }

  /** The job waits again, in the shared queue now: its reply shows its new place. */
  requeued(jobId: string): void {
    const e = this.followed.get(jobId);
    if (!e || e.live.isClosed || !this.o.ownsGuild(e.guildId)) return;
    this.o.board.wait(e, e.phase === 'running');
    this.o.board.requestRefresh();
  }

  /** A job (re)entered the queue; ours may be back after a failed attempt or a stall. */
  waiting(jobId: string): void {
    const e = this.followed.get(jobId);
    const requeued = !!e && !e.live.isClosed && e.phase === 'running' && this.o.ownsGuild(e.guildId);
    if (e && requeued) this.o.board.wait(e, true);
    this.o.board.entered(jobId, requeued);
  }

  /**
   * Settles a job now (a cancel while no worker holds it) and posts what it became, after the
   * edits already started on its reply. false: another outcome was recorded first, and stands.
   */
  async settle(jobId: string, outcome: SettleOutcome): Promise<boolean> {
    const settled = await this.settleHere(jobId, outcome);
    if (!settled) return false;
    const e = this.followed.get(jobId);
    if (e) await e.live.inOrder(() => this.deliver(settled, null), 'delivery failed');
    else await this.deliver(settled, null);
    return true;
  }

  /** Posts a settled job this process has claimed (the sweep's path after a restart). */
  deliver(job: StoredJob, images: Buffer[] | null): Promise<void> {
    const replyMessageId = job.replyMessageId ?? this.followed.get(job.id)?.live.replyMessageId ?? null;
    this.release(job.id);
    return this.o.post.post({ ...job, replyMessageId }, images);
  }

  /** Stops taking events and scheduling edits; resolves once the work already started has finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const e of this.followed.values()) e.live.halt();
    const marks = this.markRunning();
    await this.o.board.stop();
    await Promise.allSettled([...this.followed.values()].map((e) => e.live.idle()));
    await marks;
  }

  private async markRunning(): Promise<void> {
    if (this.markTimer) clearTimeout(this.markTimer);
    this.markTimer = undefined;
    const started = [...this.startedAt].map(([jobId, at]) => ({ jobId, at: new Date(at) }));
    this.startedAt.clear();
    if (started.length === 0) return;
    await this.o.store.markRunning(started).catch((err: unknown) => this.o.log.warn({ err, jobs: started.length }, 'markRunning failed'));
  }

  /** A worker's result, refused as malformed when it names keys that are not this job's own (never read, never deleted). */
  private parseResult(jobId: string, returnvalue: unknown): ParsedJobResult {
    const parsed = parseJobResult(returnvalue);
    if (!parsed.success || this.o.results.ownsResultKeys(jobId, parsed.data)) return parsed;
    return { success: false, issues: 'the result names keys that are not this job’s' };
  }

  private async complete(jobId: string, parsed: ParsedJobResult): Promise<void> {
    if (!parsed.success) this.o.log.error({ jobId, issues: parsed.issues }, 'worker returned a malformed result');
    // The cancel flag in the same command as the images: a member who pressed Cancel before the
    // job is settled was told it would be refunded. A flag set after this read belongs to a cancel
    // that then looks at the job again, finds it finished and settles it itself (bot/jobs/cancel.ts)
    // through the same status-guarded statement as below: whichever lands first stands, and the
    // member is told which.
    const read = parsed.success ? await this.o.results.getMany([...parsed.data.imageKeys, await this.o.cancelFlag(jobId)]) : [];
    const images = read.slice(0, -1);
    const cancelled = read.at(-1) != null;
    const present = images.every((b) => b !== null);
    // A worker's images are hostile input (a guild's own worker is not ours): checked by their
    // headers against the output limits before anything decodes them.
    const refused = present && !cancelled ? refusedOutputImage(images as Buffer[]) : null;
    if (refused) this.o.log.warn({ jobId, refused }, 'worker result refused by the output limits');
    const settled = await this.settleHere(jobId, completedOutcome(parsed, present, cancelled, refused));
    if (settled) await this.deliver(settled, settled.status === 'succeeded' ? (images as Buffer[]) : null);
  }

  private async fail(jobId: string): Promise<void> {
    const job = await this.o.queue.getJob(jobId);
    if (!failureIsFinal(job ? await job.getState() : null)) return;
    const failure = await this.o.results.getFailure(jobId);
    if (failure?.code === 'handed_back' && this.o.handBack) {
      await this.o.handBack(jobId);
      this.requeued(jobId);
      return;
    }
    const settled = await this.settleHere(jobId, failedOutcome(failure));
    if (settled) await this.deliver(settled, null);
  }

  /**
   * Whether this job is this process's to settle: the store's status guard decides, once, across
   * every bot process. The loser stops following the job at once (its timers with it), so it can
   * never edit a reply the winner has turned into the result.
   */
  private async settleHere(jobId: string, outcome: SettleOutcome): Promise<StoredJob | null> {
    const booked = this.o.price ? await this.o.price(jobId, outcome) : outcome;
    const settled = await this.o.store.settle(jobId, booked);
    if (!settled) this.release(jobId);
    else
      void this.o.queue
        .remove(jobId)
        .catch((err: unknown) => this.o.log.debug({ err, jobId }, 'could not remove a settled job from the queue; it expires'));
    return settled;
  }

  /** Runs settle-and-post work after the job's message edits already started (or at once if not followed). */
  private inOrder(jobId: string, work: () => Promise<void>): void {
    // Shutting down: leave it to the next bot's sweep rather than start what may be cut short.
    if (this.stopped) return;
    const e = this.followed.get(jobId);
    if (e) void e.live.inOrder(work, 'settle or delivery failed');
    else void work().catch((err: unknown) => this.o.log.error({ err, jobId }, 'delivery failed'));
  }

  private track(t: {
    jobId: string;
    guildId: string;
    channelId: string;
    ref: InteractionRef;
    request: GenerationRequest;
    since: number;
    replyMessageId?: string | null;
    paidAllowed?: boolean;
  }): BoardEntry {
    const found = this.followed.get(t.jobId);
    if (found) return found;
    const live = new LiveMessage({
      ...t,
      edits: this.o.edits,
      log: this.o.log,
      now: this.o.now,
      editIntervalMs: this.editIntervalMs,
      tokenLifetimeMs: this.tokenLifetimeMs,
    });
    const e: BoardEntry = {
      jobId: t.jobId,
      guildId: t.guildId,
      request: t.request,
      live,
      phase: 'new',
      placeEditAt: 0,
      paidAllowed: t.paidAllowed ?? true,
    };
    this.followed.set(t.jobId, e);
    return e;
  }

  /** Stops following a job: no more edits, no place on the board. */
  private release(jobId: string): void {
    const e = this.followed.get(jobId);
    if (!e) return;
    e.live.close();
    this.o.board.drop(e);
    this.followed.delete(jobId);
  }
}
