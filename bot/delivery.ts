import type { QueueEvents } from 'bullmq';
import type { RawFile, REST } from 'discord.js';
import { DurationWindow, estimateEta, liveSlots, samplesInUse } from '../core/eta.js';
import {
  type GenerationRequest,
  type JobProgress,
  jobProgressSchema,
  type ParsedJobResult,
  parseJobResult,
  toJobPayload,
} from '../core/generation.js';
import { STATUS_STALE_MS } from '../core/io/backend-status.js';
import type { Logger } from '../core/io/logger.js';
import { enqueueJob, type GenerateQueue } from '../core/io/queue.js';
import type { JobPlace, QueuePositions, QueueSnapshot } from '../core/io/queue-position.js';
import type { ResultStore } from '../core/io/results.js';
import type { InteractionRef, JobStore, StoredJob } from '../core/ports.js';
import { CANCELLED_IN_QUEUE, completedOutcome, failedOutcome, failureIsFinal } from '../core/settle.js';
import { isGone, Outbox } from './jobs/outbox.js';
import { failureBody, type MessageBody, progressBody, queuedBody } from './jobs/render.js';
import { composeResult, type OutgoingMessage } from './jobs/result-files.js';

export interface DeliveryOptions {
  store: JobStore;
  results: ResultStore;
  queue: GenerateQueue;
  /** Exact queue positions of many jobs in one Redis round trip. */
  positions: QueuePositions;
  events: QueueEvents;
  /** REST for interaction webhooks (edits of the reply); exempt from the global limit. */
  rest: REST;
  /** REST with the bot token for channel messages, under the global limit. */
  botRest: REST;
  log: Logger;
  now: () => Date;
  /** true when this process's gateway shard(s) serve the guild; others leave progress edits alone. */
  ownsGuild: (guildId: string) => boolean;
  /** Minimum gap between two edits of one message (Discord rate limits; ~1.5 s keeps well inside). */
  editIntervalMs?: number;
  /** Interaction tokens last 15 minutes; past this age the bot posts with its own token instead. */
  tokenLifetimeMs?: number;
  /** How often undelivered jobs are reconciled against BullMQ (missed events, restarts). */
  sweepIntervalMs?: number;
  /** A delivery claim older than this is taken to belong to a dead process. */
  claimStaleMs?: number;
  /** Called once per job right after this process settled it (budget alerts). */
  afterSettle?: (job: StoredJob) => Promise<void>;
  /** Least time between two reads of the queued jobs' positions (each is one Redis round trip). */
  queueRefreshMs?: number;
}

/*
 * Bounding Discord calls for position updates. Every start or finish moves every queued job up one
 * place, so a 1000-job queue would mean 1000 edits per event. Instead, the first FRONT_POSITIONS
 * jobs (the ones whose members are about to see something happen) are updated on every refresh,
 * still at most one edit per message per editIntervalMs; farther jobs at most once every
 * FAR_EVERY_MS each, and at most FAR_EDITS_PER_REFRESH of them per refresh, stalest first. With
 * refreshes at most every queueRefreshMs (1 s), that caps position edits at about
 * 10 / 1.5 s + 5 / 1 s ≈ 12 per second whatever the queue's length.
 */
const FRONT_POSITIONS = 10;
const FAR_EVERY_MS = 15_000;
const FAR_EDITS_PER_REFRESH = 5;
/** Durations remembered for the ETA: recent enough to follow a change of backend, enough to average out. */
const DURATION_WINDOW = 30;
/** Jobs whose start this process saw, kept for the ETA's remaining-time guess; bounded against missed events. */
const ACTIVE_SEEN_MAX = 1000;

interface Tracked {
  jobId: string;
  guildId: string;
  channelId: string;
  ref: InteractionRef;
  /** The reply's message id once known: past the token's life the bot edits it with its own token. */
  replyMessageId?: string;
  request: GenerationRequest;
  /** Every edit of this job's message runs on this chain, so a late progress edit never overwrites a result. */
  chain: Promise<void>;
  lastEditAt: number;
  pending?: JobProgress;
  /** A position/ETA edit waiting for the message's next edit slot; dropped once the job runs. */
  pendingQueued?: MessageBody;
  timer?: NodeJS.Timeout;
  done: boolean;
  /** new: admitted; queued: waiting in the queue (position edits); running: a worker has it (progress edits). */
  phase: 'new' | 'queued' | 'running';
  /** Text of the last position message sent or scheduled, so an unchanged one is not sent again. */
  shownQueued?: string;
  /** When a position edit was last scheduled (far positions are refreshed rarely). */
  queuedEditAt: number;
  /** The reply can no longer be edited (deleted, token expired): no more position edits. */
  quiet: boolean;
  /** Date.now() when this process started following the job; its interaction token dies 15 minutes after. */
  since: number;
}

/** Past the token's life, with no reply id on record: there is no message the bot may edit. */
class LiveMessageUnknown extends Error {}

/**
 * Turns queue events into Discord messages: throttled progress edits, then exactly one result or
 * failure per job. Settling is idempotent in the store, so duplicate events, several bot processes
 * and restarts all converge on one charge and one message.
 */
export class Delivery {
  private readonly tracked = new Map<string, Tracked>();
  private readonly editIntervalMs: number;
  private readonly tokenLifetimeMs: number;
  private readonly outbox: Outbox;
  private readonly claimStaleMs: number;
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;
  private stopped = false;
  /** Jobs of this process shown as waiting in the queue: the ones position refreshes edit. */
  private readonly queued = new Set<Tracked>();
  private readonly durations = new DurationWindow(DURATION_WINDOW);
  /** jobId → Date.now() of its last `active` event. */
  private readonly activeSince = new Map<string, number>();
  private readonly queueRefreshMs: number;
  private refreshTimer: NodeJS.Timeout | undefined;
  private refreshDueAt = 0;
  private refreshing: Promise<void> | undefined;
  private refreshAgain = false;
  private lastRefreshAt = 0;

  constructor(private readonly o: DeliveryOptions) {
    this.queueRefreshMs = o.queueRefreshMs ?? 1000;
    this.editIntervalMs = o.editIntervalMs ?? 1500;
    this.tokenLifetimeMs = o.tokenLifetimeMs ?? 14 * 60_000;
    this.claimStaleMs = o.claimStaleMs ?? 30_000;
    this.outbox = new Outbox({ rest: o.rest, botRest: o.botRest, log: o.log, now: o.now, tokenLifetimeMs: this.tokenLifetimeMs });
  }

  /** Subscribes to queue events, then reconciles whatever happened while no bot was listening. */
  async start(): Promise<void> {
    const { events, log } = this.o;
    events.on('progress', ({ jobId, data }) => this.onProgress(jobId, data));
    events.on('active', ({ jobId }) => {
      this.o.store.markRunning([{ jobId, at: this.o.now() }]).catch((err: unknown) => log.warn({ err, jobId }, 'markRunning failed'));
      this.onActive(jobId);
    });
    events.on('completed', ({ jobId, returnvalue }) => {
      const parsed = parseJobResult(returnvalue);
      // How long the job took, for the ETA.
      if (parsed.success) this.durations.add({ ms: parsed.data.runMs, count: parsed.data.imageKeys.length, backend: parsed.data.backend });
      this.jobLeft(jobId);
      this.run(jobId, () => this.complete(jobId, parsed));
    });
    events.on('failed', ({ jobId }) => {
      this.jobLeft(jobId);
      this.run(jobId, () => this.fail(jobId));
    });
    events.on('removed', ({ jobId }) => this.jobLeft(jobId));
    events.on('waiting', ({ jobId }) => this.onWaiting(jobId));
    // The ETA needs durations from the first job on; a bot restart must not forget them.
    try {
      this.durations.seed(
        (await this.o.store.recentRunTimes(DURATION_WINDOW)).map((r) => ({
          ms: r.ms,
          count: r.count,
          ...(r.backend ? { backend: r.backend } : {}),
        })),
      );
    } catch (err) {
      log.warn({ err }, 'could not read recent job durations; ETAs start empty');
    }
    await events.waitUntilReady();
    await this.sweep();
    const every = this.o.sweepIntervalMs ?? 10_000;
    this.sweepTimer = setInterval(() => void this.sweep(), every);
    this.sweepTimer.unref();
  }

  /** Stops sweeping and waits for deliveries under way. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.refreshTimer = undefined;
    for (const t of this.tracked.values()) if (t.timer) clearTimeout(t.timer);
    await this.sweeping;
    await this.refreshing;
    await Promise.allSettled([...this.tracked.values()].map((t) => t.chain));
    await Promise.allSettled([...this.delivering]);
  }

  /** Where each job stands in the queue right now (one round trip); jobs not waiting are absent. */
  async positionsOf(jobIds: readonly string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    if (jobIds.length === 0) return out;
    const snap = await this.o.positions.read([...jobIds]);
    for (const [id, place] of snap.places) if (place.state === 'waiting') out.set(id, place.ahead + 1);
    return out;
  }

  /** Number of jobs this process is following (for metrics and tests). */
  get inFlight(): number {
    return this.tracked.size;
  }

  private track(
    jobId: string,
    guildId: string,
    channelId: string,
    ref: InteractionRef,
    request: GenerationRequest,
    since = Date.now(),
    replyMessageId?: string | null,
  ): Tracked {
    let t = this.tracked.get(jobId);
    if (!t) {
      t = {
        jobId,
        guildId,
        channelId,
        ref,
        request,
        chain: Promise.resolve(),
        lastEditAt: 0,
        done: false,
        phase: 'new',
        queuedEditAt: 0,
        quiet: false,
        since,
      };
      if (replyMessageId) t.replyMessageId = replyMessageId;
      this.tracked.set(jobId, t);
    }
    return t;
  }

  private enqueue(t: Tracked, fn: () => Promise<void>): Promise<void> {
    t.chain = t.chain.then(fn).catch((err: unknown) => this.o.log.warn({ err, jobId: t.jobId }, 'message edit failed'));
    return t.chain;
  }

  /** Runs a settle-and-deliver step on the job's chain (creating the entry after a restart). */
  private run(jobId: string, fn: () => Promise<void>): void {
    // Shutting down: leave it to the next bot's sweep rather than start what may be cut short.
    if (this.stopped) return;
    const t = this.tracked.get(jobId);
    const p = t ? this.enqueue(t, fn) : fn().catch((err: unknown) => this.o.log.error({ err, jobId }, 'delivery failed'));
    void p;
  }

  /** Starts following a job before it is enqueued, so no event of it can be missed or misordered. */
  begin(jobId: string, guildId: string, channelId: string, ref: InteractionRef, request: GenerationRequest): void {
    this.track(jobId, guildId, channelId, ref, request);
  }

  /** Stops following a job that never made it into the queue. */
  forget(jobId: string): void {
    this.finishTracking(jobId);
  }

  /** Shows the freshly queued job with its position and ETA; runs on the job's chain, skipped if it already finished. */
  async showQueued(jobId: string): Promise<void> {
    const t = this.tracked.get(jobId);
    if (!t) return;
    let body = queuedBody(jobId, t.request, null);
    try {
      const snap = await this.o.positions.read([jobId]);
      const place = snap.places.get(jobId);
      if (place?.state === 'waiting' && t.phase === 'new') {
        this.setPhase(t, 'queued');
        body = this.queuedRenderer(snap)(t, place.ahead);
      } else {
        // An idle worker took it already: it was next; progress edits follow.
        body = this.queuedRenderer(snap, jobId)(t, 0);
      }
    } catch (err) {
      this.o.log.debug({ err, jobId }, 'queue position unavailable');
    }
    // Counts as an edit from now: a position refresh racing this one waits its turn.
    t.lastEditAt = Date.now();
    t.shownQueued = body.content;
    t.queuedEditAt = Date.now();
    await this.enqueue(t, async () => {
      if (t.done) return;
      const id = await this.outbox.editOriginal(t.ref, body, []);
      t.lastEditAt = Date.now();
      this.rememberReply(t, id);
    });
  }

  /**
   * Keeps the reply's id for edits after the token expires. Only in memory here: the sweep writes
   * it to Postgres for jobs still unfinished, so the many short jobs cost no extra statement.
   */
  private rememberReply(t: Tracked, id: string): void {
    t.replyMessageId ??= id;
  }

  /**
   * Edits the job's live message: through the interaction webhook while the token lives, then with
   * the bot's own token on the channel route (the reply is the bot's message), so a job that
   * outlives the 15-minute token keeps showing its place and progress.
   */
  private async editLive(t: Tracked, body: MessageBody, files: RawFile[]): Promise<void> {
    if (Date.now() - t.since < this.tokenLifetimeMs) {
      this.rememberReply(t, await this.outbox.editOriginal(t.ref, body, files));
      return;
    }
    if (!t.replyMessageId) throw new LiveMessageUnknown();
    await this.outbox.editInChannel(t.channelId, t.replyMessageId, body, files);
  }

  private setPhase(t: Tracked, phase: Tracked['phase']): void {
    t.phase = phase;
    if (phase === 'queued' && !t.done) this.queued.add(t);
    else this.unqueue(t);
    if (phase === 'running') t.pendingQueued = undefined;
  }

  /** Stops position updates of a job; with none left to update, no refresh timer stays armed. */
  private unqueue(t: Tracked): void {
    this.queued.delete(t);
    if (this.queued.size === 0 && this.refreshTimer) {
      clearTimeout(this.refreshTimer);
      this.refreshTimer = undefined;
    }
  }

  private onActive(jobId: string): void {
    this.activeSince.delete(jobId);
    this.activeSince.set(jobId, Date.now());
    if (this.activeSince.size > ACTIVE_SEEN_MAX) this.activeSince.delete(this.activeSince.keys().next().value!);
    const t = this.tracked.get(jobId);
    if (t && !t.done) this.setPhase(t, 'running');
    this.requestRefresh();
  }

  /** A job finished, failed an attempt or was removed: a slot or a place in the queue freed up. */
  private jobLeft(jobId: string): void {
    this.activeSince.delete(jobId);
    const t = this.tracked.get(jobId);
    if (t) this.unqueue(t);
    this.requestRefresh();
  }

  /** A job (re)entered the queue: a new one may go ahead of ours; ours may be back after a failed attempt or a stall. */
  private onWaiting(jobId: string): void {
    const t = this.tracked.get(jobId);
    if (t && !t.done && t.phase === 'running' && this.o.ownsGuild(t.guildId)) {
      this.activeSince.delete(jobId);
      t.shownQueued = undefined;
      t.queuedEditAt = 0;
      this.setPhase(t, 'queued');
    }
    this.requestRefresh();
  }

  /**
   * Renders queued messages against one snapshot; what every job shares is worked out once.
   * `runningSelf`: that job is among the running ones already and must not wait for itself.
   */
  private queuedRenderer(snap: QueueSnapshot, runningSelf?: string): (t: Tracked, ahead: number) => MessageBody {
    const now = Date.now();
    const running = runningSelf ? Math.max(0, snap.active - 1) : snap.active;
    // The most recently started jobs are the likeliest to be the ones still running.
    const starts = running > 0 ? [...this.activeSince].filter(([id]) => id !== runningSelf).slice(-running) : [];
    const shared = {
      running,
      runningElapsedMs: starts.map(([, at]) => now - at),
      slots: liveSlots(snap.statuses, now, STATUS_STALE_MS),
      samples: samplesInUse(this.durations.samples(), snap.statuses, now, STATUS_STALE_MS),
    };
    return (t, ahead) => queuedBody(t.jobId, t.request, [ahead + 1, estimateEta({ ...shared, ahead, count: t.request.count })]);
  }

  /** Asks for a position refresh soon (coalesced: one read per queueRefreshMs however many events arrive). */
  private requestRefresh(): void {
    if (this.stopped || this.queued.size === 0) return;
    if (this.refreshing) {
      this.refreshAgain = true;
      return;
    }
    const due = Math.max(Date.now(), this.lastRefreshAt + this.queueRefreshMs);
    if (this.refreshTimer && this.refreshDueAt <= due) return;
    this.armRefresh(due);
  }

  private armRefresh(at: number): void {
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.refreshDueAt = at;
    this.refreshTimer = setTimeout(
      () => {
        this.refreshTimer = undefined;
        this.refreshing = this.refreshQueued()
          .catch((err: unknown) => this.o.log.debug({ err }, 'queue position refresh failed'))
          .finally(() => {
            this.refreshing = undefined;
            this.lastRefreshAt = Date.now();
            if (this.stopped || this.queued.size === 0) return;
            // Events during the read: go again soon. Otherwise a slow tick keeps far positions and the ETA current.
            const again = this.refreshAgain;
            this.refreshAgain = false;
            this.armRefresh(this.lastRefreshAt + (again ? this.queueRefreshMs : FAR_EVERY_MS));
          });
      },
      Math.max(0, at - Date.now()),
    );
  }

  /** One batched position read for every queued job this process shows, then edits where the text changed. */
  private async refreshQueued(): Promise<void> {
    const jobs = [...this.queued].filter((t) => {
      if (t.done || t.quiet || !this.o.ownsGuild(t.guildId) || (Date.now() - t.since >= this.tokenLifetimeMs && !t.replyMessageId)) {
        this.unqueue(t);
        return false;
      }
      return true;
    });
    if (jobs.length === 0) return;
    const snap = await this.o.positions.read(jobs.map((t) => t.jobId));
    if (this.stopped) return;
    const now = Date.now();
    const render = this.queuedRenderer(snap);
    const changed: { t: Tracked; ahead: number; body: MessageBody }[] = [];
    for (const t of jobs) {
      const place = snap.places.get(t.jobId);
      if (t.done || t.phase !== 'queued' || !place) continue;
      // Not waiting any more: a worker has it (progress takes over) or it has finished.
      if (place.state === 'other') this.setPhase(t, 'running');
      if (place.state !== 'waiting') continue;
      const body = render(t, place.ahead);
      if (body.content !== t.shownQueued) changed.push({ t, ahead: place.ahead, body });
    }
    const far = changed.filter((c) => c.ahead >= FRONT_POSITIONS && now - c.t.queuedEditAt >= FAR_EVERY_MS);
    far.sort((a, b) => a.t.queuedEditAt - b.t.queuedEditAt);
    const chosen = [...changed.filter((c) => c.ahead < FRONT_POSITIONS), ...far.slice(0, FAR_EDITS_PER_REFRESH)];
    for (const { t, body } of chosen) {
      t.shownQueued = body.content;
      t.queuedEditAt = now;
      t.pendingQueued = body;
      this.scheduleEdit(t);
    }
  }

  private onProgress(jobId: string, data: unknown): void {
    const t = this.tracked.get(jobId);
    if (!t || t.done || !this.o.ownsGuild(t.guildId)) return;
    const parsed = jobProgressSchema.safeParse(data);
    if (!parsed.success) return;
    // Progress means a worker has it, even if its `active` event was missed.
    if (t.phase !== 'running') this.setPhase(t, 'running');
    t.pending = parsed.data;
    this.scheduleEdit(t);
  }

  /**
   * Sends the latest pending edit of the message once editIntervalMs has passed since its last
   * edit, on the job's chain. Progress wins over a position edit: once the job runs, its queue
   * position is history.
   */
  private scheduleEdit(t: Tracked): void {
    if (t.timer || this.stopped) return;
    const delay = Math.max(0, t.lastEditAt + this.editIntervalMs - Date.now());
    t.timer = setTimeout(() => {
      t.timer = undefined;
      const p = t.pending;
      const q = t.pendingQueued;
      t.pending = undefined;
      t.pendingQueued = undefined;
      if (t.done) return;
      if (p) {
        t.lastEditAt = Date.now();
        void this.enqueue(t, () => this.editProgress(t, p));
      } else if (q && t.phase === 'queued') {
        t.lastEditAt = Date.now();
        void this.enqueue(t, () => this.editQueued(t, q));
      }
    }, delay);
  }

  private async editQueued(t: Tracked, body: MessageBody): Promise<void> {
    if (t.done || t.phase !== 'queued') return;
    try {
      await this.editLive(t, body, []);
    } catch (err) {
      // Best effort like progress; a reply that is gone for good is not retried on every refresh.
      if (isGone(err) || err instanceof LiveMessageUnknown) t.quiet = true;
      else t.shownQueued = undefined;
      this.o.log.debug({ err, jobId: t.jobId }, 'position edit skipped');
    }
    t.lastEditAt = Date.now();
  }

  private async editProgress(t: Tracked, p: JobProgress): Promise<void> {
    if (t.done) return;
    const preview = p.previewKey ? await this.o.results.get(p.previewKey) : null;
    const files: RawFile[] = preview ? [{ name: 'preview.png', data: preview }] : [];
    try {
      await this.editLive(t, progressBody(t.jobId, t.request, p, preview !== null), files);
    } catch (err) {
      // Progress is best effort; the final result has its own fallback path.
      this.o.log.debug({ err, jobId: t.jobId }, 'progress edit skipped');
    }
    t.lastEditAt = Date.now();
  }

  private finishTracking(jobId: string): void {
    const t = this.tracked.get(jobId);
    if (!t) return;
    t.done = true;
    if (t.timer) clearTimeout(t.timer);
    this.unqueue(t);
    this.tracked.delete(jobId);
  }

  /**
   * Cancels a job that no worker has taken yet: removes it from the queue, refunds and says so.
   * false when it is already running (the caller then asks the worker to interrupt it).
   */
  async cancelQueued(jobId: string): Promise<boolean> {
    const job = await this.o.queue.getJob(jobId);
    if (job) {
      const state = await job.getState();
      if (state === 'active' || state === 'completed' || state === 'failed') return false;
      try {
        await job.remove();
      } catch {
        return false; // picked up by a worker meanwhile
      }
    }
    const settled = await this.o.store.settle(jobId, CANCELLED_IN_QUEUE);
    if (settled) {
      const t = this.tracked.get(jobId);
      if (t) await this.enqueue(t, () => this.deliver(settled, null));
      else await this.deliver(settled, null);
    }
    return true;
  }

  /** A job finished on the worker: fetch its images, settle (charge once), deliver once. */
  private async complete(jobId: string, parsed: ParsedJobResult): Promise<void> {
    if (!parsed.success) this.o.log.error({ jobId, issues: parsed.issues }, 'worker returned a malformed result');
    const images = parsed.success ? await this.o.results.getMany(parsed.data.imageKeys) : [];
    const present = images.every((b) => b !== null);
    const settled = await this.o.store.settle(jobId, completedOutcome(parsed, present));
    if (settled) await this.deliver(settled, settled.status === 'succeeded' ? (images as Buffer[]) : null);
  }

  /** A job failed; only a final failure (no retry left) is settled and refunded. */
  private async fail(jobId: string): Promise<void> {
    const job = await this.o.queue.getJob(jobId);
    if (!failureIsFinal(job ? await job.getState() : null)) return;
    const settled = await this.o.store.settle(jobId, failedOutcome(await this.o.results.getFailure(jobId)));
    if (settled) await this.deliver(settled, null);
  }

  /** Posts the final message(s) of a settled job this process has claimed, then marks it delivered. */
  /** Deliveries under way; stop() waits for them (a job's tracking entry is gone once its delivery starts). */
  private readonly delivering = new Set<Promise<void>>();

  private deliver(settled: StoredJob, images: Buffer[] | null): Promise<void> {
    const p = this.deliverOnce(settled, images);
    this.delivering.add(p);
    void p.finally(() => this.delivering.delete(p));
    return p;
  }

  private async deliverOnce(settled: StoredJob, images: Buffer[] | null): Promise<void> {
    const replyId = settled.replyMessageId ?? this.tracked.get(settled.id)?.replyMessageId ?? null;
    const job: StoredJob = { ...settled, replyMessageId: replyId };
    this.finishTracking(job.id);
    if (this.o.afterSettle)
      void this.o.afterSettle(job).catch((err: unknown) => this.o.log.warn({ err, jobId: job.id }, 'after-settle hook failed'));
    try {
      let messages: OutgoingMessage[];
      if (job.status === 'succeeded' && job.result) {
        const imgs = images ?? (await this.o.results.getMany(job.result.imageKeys));
        messages = imgs.some((b) => b === null)
          ? [{ body: failureBody(job.request, 'expired', null), files: [] }]
          : await composeResult(job, job.result, imgs as Buffer[], { results: this.o.results, now: this.o.now });
      } else {
        messages = [{ body: failureBody(job.request, job.errorCode ?? job.status, job.errorMessage), files: [] }];
      }
      const [first, ...more] = messages;
      const sent = await this.outbox.send(job, first!.body, first!.files);
      const extraIds: string[] = [];
      for (const [n, m] of more.entries()) extraIds.push(await this.outbox.sendMore(job, m.body, m.files, n + 1, sent.inChannel !== false));
      const messageId = sent.id;
      if (sent.inChannel === 'expired' && replyId) await this.outbox.pointToResult(job, replyId, messageId);
      await this.o.store.markDelivered(job.id, messageId, extraIds);
      if (job.result) await this.o.results.forget(job.id, job.result.imageKeys);
      this.o.log.info({ jobId: job.id, status: job.status, messageId, messages: messages.length }, 'job delivered');
    } catch (err) {
      this.o.log.error({ err, jobId: job.id }, 'delivery failed; will retry');
      await this.o.store.releaseDelivery(job.id).catch(() => undefined);
    }
  }

  /**
   * Reconciles undelivered jobs with BullMQ: settles and delivers those whose events were missed,
   * re-enqueues jobs whose queue entry was lost (bot died before enqueue, Redis without persistence).
   */
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
    const now = this.o.now().getTime();
    const jobs = await this.o.store.listUndelivered(new Date(now - 2 * 86_400_000), 500);
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
        if (claimed) await this.deliver(claimed, null);
        continue;
      }
      const known = this.tracked.get(job.id)?.replyMessageId;
      if (!job.replyMessageId && known) await this.o.store.rememberReply(job.id, known);
      const place = places.get(job.id)?.state;
      if (place === 'waiting' || place === 'delayed') {
        this.follow(job, place === 'waiting');
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
      const inFlight = this.tracked.has(job.id) && Date.now() - (bull.finishedOn ?? 0) < this.claimStaleMs;
      this.follow(job, state === 'waiting' || state === 'prioritized');
      if (inFlight) continue;
      if (state === 'completed') this.run(job.id, () => this.complete(job.id, parseJobResult(bull.returnvalue)));
      else if (state === 'failed') this.run(job.id, () => this.fail(job.id));
    }
  }

  /** After a restart: follow an open job of a guild this process serves; a waiting one gets position updates again. */
  private follow(job: StoredJob, waiting: boolean): void {
    if (this.tracked.has(job.id) || !this.o.ownsGuild(job.guildId)) return;
    const t = this.track(job.id, job.guildId, job.channelId, job.interaction, job.request, job.createdAt.getTime(), job.replyMessageId);
    if (waiting) {
      this.setPhase(t, 'queued');
      this.requestRefresh();
    }
  }
}
