import { DiscordAPIError, Routes, type REST, type RawFile } from 'discord.js';
import type { QueueEvents } from 'bullmq';
import { jobProgressSchema, jobResultSchema, type GenerationRequest, type JobPayload, type JobProgress, type JobResult } from '../core/generation.js';
import type { Logger } from '../core/io/logger.js';
import type { GenerateQueue } from '../core/io/queue.js';
import type { ResultStore } from '../core/io/results.js';
import { failureText } from '../core/messages.js';
import type { InteractionRef, JobStore, StoredJob } from '../core/ports.js';
import { failureBody, progressBody, queuedBody, resultBody, resultMoreBody, type MessageBody, type ResultPart } from './render.js';
import { makeGrid } from '../core/io/grid.js';
import { planMessages } from '../core/upload-plan.js';
import { fitForUpload } from '../core/io/fit-upload.js';

export interface DeliveryOptions {
  store: JobStore;
  results: ResultStore;
  queue: GenerateQueue;
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
}

interface Tracked {
  jobId: string;
  guildId: string;
  ref: InteractionRef;
  request: GenerationRequest;
  /** Every edit of this job's message runs on this chain, so a late progress edit never overwrites a result. */
  chain: Promise<void>;
  lastEditAt: number;
  pending?: JobProgress;
  timer?: NodeJS.Timeout;
  done: boolean;
}

/** Discord errors meaning the interaction reply can no longer be edited; the channel gets a new message instead. */
/** Discord's default per-file limit when an interaction did not state one. */
const DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024;

const GONE_CODES = new Set([10008, 10015, 10062, 50027]);

function isGone(err: unknown): boolean {
  return err instanceof DiscordAPIError && typeof err.code === 'number' && GONE_CODES.has(err.code);
}

/**
 * Turns queue events into Discord messages: throttled progress edits, then exactly one result or
 * failure per job. Settling is idempotent in the store, so duplicate events, several bot processes
 * and restarts all converge on one charge and one message.
 */
export class Delivery {
  private readonly tracked = new Map<string, Tracked>();
  private readonly editIntervalMs: number;
  private readonly tokenLifetimeMs: number;
  private readonly claimStaleMs: number;
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly o: DeliveryOptions) {
    this.editIntervalMs = o.editIntervalMs ?? 1500;
    this.tokenLifetimeMs = o.tokenLifetimeMs ?? 14 * 60_000;
    this.claimStaleMs = o.claimStaleMs ?? 30_000;
  }

  /** Subscribes to queue events, then reconciles whatever happened while no bot was listening. */
  async start(): Promise<void> {
    const { events, log } = this.o;
    events.on('progress', ({ jobId, data }) => this.onProgress(jobId, data));
    events.on('active', ({ jobId }) => {
      this.o.store.markRunning(jobId).catch((err: unknown) => log.warn({ err, jobId }, 'markRunning failed'));
    });
    events.on('completed', ({ jobId, returnvalue }) => this.run(jobId, () => this.complete(jobId, returnvalue)));
    events.on('failed', ({ jobId }) => this.run(jobId, () => this.fail(jobId)));
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
    for (const t of this.tracked.values()) if (t.timer) clearTimeout(t.timer);
    await this.sweeping;
    await Promise.allSettled([...this.tracked.values()].map((t) => t.chain));
  }

  /** Number of jobs this process is following (for metrics and tests). */
  get inFlight(): number {
    return this.tracked.size;
  }

  private track(jobId: string, guildId: string, ref: InteractionRef, request: GenerationRequest): Tracked {
    let t = this.tracked.get(jobId);
    if (!t) {
      t = { jobId, guildId, ref, request, chain: Promise.resolve(), lastEditAt: 0, done: false };
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
    const t = this.tracked.get(jobId);
    const p = t ? this.enqueue(t, fn) : fn().catch((err: unknown) => this.o.log.error({ err, jobId }, 'delivery failed'));
    void p;
  }

  /** Starts following a job before it is enqueued, so no event of it can be missed or misordered. */
  begin(jobId: string, guildId: string, ref: InteractionRef, request: GenerationRequest): void {
    this.track(jobId, guildId, ref, request);
  }

  /** Stops following a job that never made it into the queue. */
  forget(jobId: string): void {
    this.finishTracking(jobId);
  }

  /** Shows the freshly queued job with its position; runs on the job's chain, skipped if it already finished. */
  async showQueued(jobId: string): Promise<void> {
    const t = this.tracked.get(jobId);
    if (!t) return;
    const { request, ref } = t;
    let position: number | null = null;
    try {
      position = await this.o.queue.getJobCountByTypes('waiting', 'prioritized');
    } catch {
      position = null;
    }
    await this.enqueue(t, async () => {
      if (t.done) return;
      await this.editOriginal(ref, queuedBody(jobId, request, position), []);
      t.lastEditAt = Date.now();
    });
  }

  private onProgress(jobId: string, data: unknown): void {
    const t = this.tracked.get(jobId);
    if (!t || t.done || !this.o.ownsGuild(t.guildId)) return;
    const parsed = jobProgressSchema.safeParse(data);
    if (!parsed.success) return;
    t.pending = parsed.data;
    if (t.timer) return;
    const delay = Math.max(0, t.lastEditAt + this.editIntervalMs - Date.now());
    t.timer = setTimeout(() => {
      t.timer = undefined;
      const p = t.pending;
      t.pending = undefined;
      if (!p || t.done) return;
      t.lastEditAt = Date.now();
      void this.enqueue(t, () => this.editProgress(t, p));
    }, delay);
  }

  private async editProgress(t: Tracked, p: JobProgress): Promise<void> {
    if (t.done) return;
    const preview = p.previewKey ? await this.o.results.get(p.previewKey) : null;
    const files: RawFile[] = preview ? [{ name: 'preview.png', data: preview }] : [];
    try {
      await this.editOriginal(t.ref, progressBody(t.jobId, t.request, p, preview !== null), files);
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
    const settled = await this.o.store.settle(jobId, { status: 'cancelled', attempts: [] });
    if (settled) {
      const t = this.tracked.get(jobId);
      if (t) await this.enqueue(t, () => this.deliver(settled, null));
      else await this.deliver(settled, null);
    }
    return true;
  }

  /** A job finished on the worker: fetch its images, settle (charge once), deliver once. */
  private async complete(jobId: string, returnvalue: unknown): Promise<void> {
    const parsed = jobResultSchema.safeParse(typeof returnvalue === 'string' ? JSON.parse(returnvalue) : returnvalue);
    if (!parsed.success) {
      this.o.log.error({ jobId, issues: parsed.error.issues }, 'worker returned a malformed result');
      const settled = await this.o.store.settle(jobId, { status: 'failed', code: 'invalid_payload', message: failureText.invalid_payload!, attempts: [] });
      if (settled) await this.deliver(settled, null);
      return;
    }
    const result = parsed.data;
    const images = await this.o.results.getMany(result.imageKeys);
    if (images.some((b) => b === null)) {
      const settled = await this.o.store.settle(jobId, { status: 'failed', code: 'expired', message: failureText.expired!, attempts: result.attempts });
      if (settled) await this.deliver(settled, null);
      return;
    }
    const settled = await this.o.store.settle(jobId, { status: 'succeeded', result });
    if (settled) await this.deliver(settled, images as Buffer[]);
  }

  /** A job failed; only a final failure (no retry left) is settled and refunded. */
  private async fail(jobId: string): Promise<void> {
    const job = await this.o.queue.getJob(jobId);
    if (job) {
      const state = await job.getState();
      if (state !== 'failed') return;
    }
    const failure = await this.o.results.getFailure(jobId);
    const settled = await this.o.store.settle(jobId, {
      status: failure?.code === 'cancelled' ? 'cancelled' : 'failed',
      code: failure?.code ?? 'all_backends_failed',
      message: failure?.message ?? failureText.all_backends_failed!,
      attempts: failure?.attempts ?? [],
    });
    if (settled) await this.deliver(settled, null);
  }

  /** Posts the final message(s) of a settled job this process has claimed, then marks it delivered. */
  private async deliver(job: StoredJob, images: Buffer[] | null): Promise<void> {
    this.finishTracking(job.id);
    if (this.o.afterSettle) void this.o.afterSettle(job).catch((err: unknown) => this.o.log.warn({ err, jobId: job.id }, 'after-settle hook failed'));
    try {
      let messages: { body: MessageBody; files: RawFile[] }[];
      if (job.status === 'succeeded' && job.result) {
        const imgs = images ?? (await this.o.results.getMany(job.result.imageKeys));
        messages = imgs.some((b) => b === null)
          ? [{ body: failureBody(job.request, 'expired', null), files: [] }]
          : await this.resultMessages(job, job.result, imgs as Buffer[]);
      } else {
        messages = [{ body: failureBody(job.request, job.errorCode ?? job.status, job.errorMessage), files: [] }];
      }
      const [first, ...more] = messages;
      const sent = await this.send(job, first!.body, first!.files);
      for (const [n, m] of more.entries()) await this.sendMore(job, m.body, m.files, n + 1, sent.inChannel);
      const messageId = sent.id;
      await this.o.store.markDelivered(job.id, messageId);
      if (job.result) await this.o.results.forget(job.id, job.result.imageKeys);
      this.o.log.info({ jobId: job.id, status: job.status, messageId, messages: messages.length }, 'job delivered');
    } catch (err) {
      this.o.log.error({ err, jobId: job.id }, 'delivery failed; will retry');
      await this.o.store.releaseDelivery(job.id).catch(() => undefined);
    }
  }

  /**
   * The result as Discord will take it: each image fitted under the channel's upload limit, a
   * numbered grid in front when there are several, and the files split over as many messages as
   * the limit requires (the first one carries the grid, the embed and the job's buttons).
   */
  private async resultMessages(job: StoredJob, result: JobResult, imgs: Buffer[]): Promise<{ body: MessageBody; files: RawFile[] }[]> {
    const limit = job.interaction.uploadLimitBytes ?? DEFAULT_UPLOAD_LIMIT;
    const fitted = await Promise.all(imgs.map((data, i) => fitForUpload(data, limit, `image-${i + 1}`)));
    const files: { file: RawFile; index: number | null }[] = fitted.map((f, index) => ({ file: { name: f.name, data: f.data, contentType: f.contentType }, index }));
    if (imgs.length > 1) {
      const grid = await fitForUpload(await makeGrid(imgs), limit, 'grid', 'webp');
      files.unshift({ file: { name: grid.name, data: grid.data, contentType: grid.contentType }, index: null });
    }
    const plan = planMessages(files.map((f) => (f.file.data as Buffer).length), limit);
    const totalMs = (job.finishedAt ?? this.o.now()).getTime() - job.createdAt.getTime();
    return plan.map((ids, n) => {
      const entries = ids.map((i) => files[i]!);
      const part: ResultPart = {
        filenames: entries.map((e) => e.file.name),
        images: entries.flatMap((e) => (e.index === null ? [] : [{ index: e.index, filename: e.file.name }])),
        ...(entries[0]?.index === null ? { grid: entries[0].file.name } : {}),
      };
      const body = n === 0 ? resultBody(job.id, job.request, result, part, totalMs) : resultMoreBody(job.id, job.request, result, part);
      return { body, files: entries.map((e) => e.file) };
    });
  }

  /**
   * Edits the interaction reply while its token lives (idempotent: a repeat edit changes nothing);
   * afterwards posts in the channel with a nonce Discord deduplicates, mentioning only the requester.
   */
  private async send(job: StoredJob, body: MessageBody, files: RawFile[]): Promise<{ id: string; inChannel: boolean }> {
    if (this.tokenAlive(job)) {
      try {
        return { id: await this.editOriginal(job.interaction, body, files), inChannel: false };
      } catch (err) {
        if (!isGone(err)) throw err;
        this.o.log.info({ jobId: job.id, code: (err as DiscordAPIError).code }, 'reply gone; posting in channel');
      }
    }
    return { id: await this.postInChannel(job, body, files, 0), inChannel: true };
  }

  /** Follow-up `n` (1-based) of a result split over several messages: a webhook follow-up while the token lives, else a channel post. */
  private async sendMore(job: StoredJob, body: MessageBody, files: RawFile[], n: number, inChannel: boolean): Promise<void> {
    if (!inChannel && this.tokenAlive(job)) {
      try {
        await this.o.rest.post(Routes.webhook(job.interaction.applicationId, job.interaction.token), {
          body,
          files,
          auth: false,
          query: new URLSearchParams({ wait: 'true' }),
        });
        return;
      } catch (err) {
        if (!isGone(err)) throw err;
      }
    }
    await this.postInChannel(job, body, files, n);
  }

  private tokenAlive(job: StoredJob): boolean {
    return this.o.now().getTime() - job.createdAt.getTime() < this.tokenLifetimeMs;
  }

  /** A channel message with the bot's token; the nonce makes a retried post land once. */
  private async postInChannel(job: StoredJob, body: MessageBody, files: RawFile[], part: number): Promise<string> {
    const hex = job.id.replaceAll('-', '');
    const nonce = part === 0 ? hex.slice(0, 25) : `${hex.slice(0, 22)}p${part}`;
    const posted = (await this.o.botRest.post(Routes.channelMessages(job.channelId), {
      body: {
        ...body,
        content: `<@${job.userId}> ${body.content}`.trim(),
        allowed_mentions: { parse: [], users: [job.userId] },
        ...(job.replyMessageId ? { message_reference: { message_id: job.replyMessageId, fail_if_not_exists: false } } : {}),
        nonce,
        enforce_nonce: true,
      },
      files,
    })) as { id: string };
    return posted.id;
  }

  private async editOriginal(ref: InteractionRef, body: MessageBody, files: RawFile[]): Promise<string> {
    const msg = (await this.o.rest.patch(Routes.webhookMessage(ref.applicationId, ref.token, '@original'), {
      body,
      files,
      auth: false,
    })) as { id: string };
    return msg.id;
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
    for (const job of jobs) {
      if (this.stopped) return;
      if (job.status === 'succeeded' || job.status === 'failed' || job.status === 'cancelled') {
        const claimed = await this.o.store.claimDelivery(job.id, this.claimStaleMs);
        if (claimed) await this.deliver(claimed, null);
        continue;
      }
      const bull = await this.o.queue.getJob(job.id);
      if (!bull) {
        // Give the submitter time to enqueue before deciding the queue entry is lost.
        if (now - job.createdAt.getTime() < this.claimStaleMs) continue;
        // Rare path (queue entry lost): without a fresh budget check, stay on free backends.
        const payload: JobPayload = { v: 1, jobId: job.id, guildId: job.guildId, request: job.request, paidAllowed: false, nsfwAllowed: false };
        await this.o.queue.add(job.request.kind, payload, { jobId: job.id });
        this.o.log.warn({ jobId: job.id }, 're-enqueued a job missing from the queue');
        continue;
      }
      const state = await bull.getState();
      if (!this.tracked.has(job.id) && this.o.ownsGuild(job.guildId)) {
        this.track(job.id, job.guildId, job.interaction, job.request);
      }
      if (state === 'completed') this.run(job.id, () => this.complete(job.id, bull.returnvalue));
      else if (state === 'failed') this.run(job.id, () => this.fail(job.id));
    }
  }
}
