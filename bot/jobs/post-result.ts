import { afterFailedDelivery, DELIVERY_RETRY, type DeliveryRetryPolicy } from '../../core/delivery.js';
import { inputKeyList } from '../../core/generation.js';
import { refusedOutputImage } from '../../core/io/image-sniff.js';
import type { ImageTasks } from '../../core/io/image-tasks.js';
import type { Logger } from '../../core/io/logger.js';
import type { ResultStore } from '../../core/io/results.js';
import type { ThreadPool } from '../../core/io/thread-pool.js';
import { text } from '../../core/messages.js';
import type { Delivered, JobStore, StoredJob } from '../../core/ports.js';
import { deliveryFailure, describeDiscordError, type Outbox } from './outbox.js';
import { failureBody } from './render.js';
import { composeResult, type OutgoingMessage } from './result-files.js';

export interface PostResultOptions {
  store: Pick<JobStore, 'markDelivered' | 'releaseDelivery' | 'deferDelivery' | 'giveUpDelivery' | 'notePosted' | 'expireResult'>;
  results: Pick<ResultStore, 'get' | 'getMany' | 'forget'>;
  outbox: Pick<Outbox, 'send' | 'sendMore' | 'pointToResult' | 'tokenAlive'>;
  log: Logger;
  now: () => number;
  /** Called once per settled job, before its first try at posting (budget alerts, moderator notices). */
  afterSettle?: (job: StoredJob) => Promise<void>;
  /** Called when posting a job is given up (after it was recorded as undeliverable and refunded). */
  onUndeliverable?: (job: StoredJob, reason: string) => Promise<void>;
  /** When failed posts are tried again and when they are given up (default core/delivery.ts DELIVERY_RETRY). */
  retry?: DeliveryRetryPolicy;
  /** Where re-encoding and gridding run: the bot's thread pool. */
  cpu: Pick<ThreadPool<ImageTasks>, 'run'>;
}

/**
 * Posts a settled job: its images (fitted, gridded, split over messages as the upload limit
 * requires) or its failure, through the outbox; then marks it delivered and drops its images, and
 * the member's input images, from Redis. A post that fails is tried again later by the sweep (here
 * or in another process) on the schedule of core/delivery.ts, and given up when Discord keeps refusing: the job is then recorded
 * as undeliverable, refunded, and moderators are told. A result split over several messages records
 * each message as it is posted, so a later try resumes after the last one and never posts a part twice.
 * Marking delivered starts as soon as a job is posted; the jobs posted while a mark is under way
 * are marked together next, in one statement, and their images dropped in one command, so a burst
 * costs a statement per round trip rather than per job, and a lone job waits for nothing.
 */
export class PostResult {
  /** Deliveries under way; drain() waits for them. */
  private readonly delivering = new Set<Promise<void>>();
  /** Posted, not yet marked delivered. */
  private posted: (Delivered & { job: StoredJob })[] = [];
  /** The mark under way, if any; the jobs posted meanwhile wait for the next one. */
  private marking: Promise<void> | undefined;

  constructor(private readonly o: PostResultOptions) {}

  /** Posts `job` (settled and claimed by this process); `images` when already fetched. Never throws. */
  post(job: StoredJob, images: Buffer[] | null): Promise<void> {
    const p = this.postOnce(job, images);
    this.delivering.add(p);
    void p.finally(() => this.delivering.delete(p));
    return p;
  }

  /** Waits for every delivery under way, and for them to be marked delivered. */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.delivering]);
    await this.marking;
  }

  private async postOnce(job: StoredJob, images: Buffer[] | null): Promise<void> {
    if (this.o.afterSettle && job.deliveryAttempts === 0)
      void this.o.afterSettle(job).catch((err: unknown) => this.o.log.warn({ err, jobId: job.id }, 'after-settle hook failed'));
    let posted: Delivered;
    let count: number;
    try {
      const messages = await this.compose(job, images);
      count = messages.length;
      posted = await this.send(job, messages);
    } catch (err) {
      await this.failed(job, err);
      return;
    }
    this.posted.push({ job, ...posted });
    this.marking ??= this.markPosted();
    await this.marking;
    this.o.log.info({ jobId: job.id, status: job.status, messageId: posted.messageId, messages: count }, 'job delivered');
  }

  /**
   * Sends the messages not yet posted: a split result records each part as it lands, so a try that
   * fails half-way resumes after the last part posted.
   */
  private async send(job: StoredJob, messages: OutgoingMessage[]): Promise<Delivered> {
    const [first, ...more] = messages;
    const split = more.length > 0;
    let messageId = job.resultMessageId;
    let inChannel = !this.o.outbox.tokenAlive(job);
    if (messageId === null || !split) {
      const sent = await this.o.outbox.send(job, first!.body, first!.files);
      messageId = sent.id;
      inChannel = sent.inChannel !== false;
      if (sent.inChannel === 'expired' && job.replyMessageId) {
        // Worded by what was posted: a result carries images; a success whose images were lost is posted as a failure.
        const outcome = first!.files.length > 0 ? 'finished' : (job.errorCode ?? job.status) === 'cancelled' ? 'cancelled' : 'failed';
        await this.o.outbox.pointToResult(job, job.replyMessageId, messageId, outcome);
      }
      if (split) await this.o.store.notePosted(job.id, messageId, []);
    }
    const extraIds = job.resultMessageId === null ? [] : [...job.resultExtraIds];
    for (const [n, m] of more.entries()) {
      if (n < extraIds.length) continue;
      extraIds.push(await this.o.outbox.sendMore(job, m.body, m.files, n + 1, inChannel));
      await this.o.store.notePosted(job.id, messageId, extraIds);
    }
    return { jobId: job.id, messageId, extraIds };
  }

  /** A try failed: another one later, on the schedule core/delivery.ts sets, or none (undeliverable, refunded, moderators told). */
  private async failed(job: StoredJob, err: unknown): Promise<void> {
    const tries = job.deliveryAttempts + 1;
    const reason = describeDiscordError(err);
    const decision = afterFailedDelivery(tries, deliveryFailure(err), this.o.retry ?? DELIVERY_RETRY);
    try {
      if (!decision.giveUp) {
        this.o.log.warn({ err, jobId: job.id, tries, retryInMs: decision.retryInMs }, 'delivery failed; will retry');
        await this.o.store.deferDelivery(job.id, tries, new Date(this.o.now() + decision.retryInMs), reason);
        return;
      }
      this.o.log.error({ err, jobId: job.id, tries }, 'delivery given up: recorded as undeliverable and refunded');
      const given = await this.o.store.giveUpDelivery(job.id, reason);
      if (given && this.o.onUndeliverable) await this.o.onUndeliverable(given, reason);
    } catch (storeErr) {
      // The claim goes stale and the sweep tries again; nothing is lost.
      this.o.log.error({ err: storeErr, jobId: job.id }, 'could not record a failed delivery');
      await this.o.store.releaseDelivery(job.id).catch(() => undefined);
    }
  }

  /**
   * Marks the posted jobs delivered and drops their images, batch after batch until none is left;
   * if a mark fails, its jobs are released for the sweep (posting again edits the same reply).
   */
  private async markPosted(): Promise<void> {
    while (this.posted.length > 0) {
      const batch = this.posted;
      this.posted = [];
      try {
        await this.o.store.markDelivered(batch);
      } catch (err) {
        this.o.log.error({ err, jobs: batch.length }, 'marking jobs delivered failed; the sweep will post them again');
        await Promise.allSettled(batch.map((d) => this.o.store.releaseDelivery(d.jobId)));
        continue;
      }
      // Failed jobs too: a paid result kept for a retry that then failed for good goes with them. The
      // worker's grid key too: a guild's worker writes it under the guild's key space, not ours. And
      // the member's input images: the worker drops them only when it succeeds.
      const settled = batch.map((d) => ({
        jobId: d.jobId,
        imageKeys: [...(d.job.result?.imageKeys ?? []), ...(d.job.result?.gridKey ? [d.job.result.gridKey] : [])],
        inputKeys: inputKeyList(d.job.request),
        guildId: d.job.guildId,
      }));
      await this.o.results
        .forget(settled)
        .catch((err: unknown) => this.o.log.warn({ err }, 'could not drop delivered images; they expire'));
    }
    this.marking = undefined;
  }

  /**
   * The message(s) a settled job is posted as: its result, or its failure (also when its images
   * expired meanwhile, or were replaced by ones the output limits refuse since the result was
   * checked: the success becomes a refunded failure before it is posted as one).
   */
  private async compose(job: StoredJob, images: Buffer[] | null): Promise<OutgoingMessage[]> {
    if (job.status !== 'succeeded' || !job.result) {
      return [{ body: failureBody(job.request, job.errorCode ?? job.status, job.errorMessage), files: [] }];
    }
    const imgs = images ?? (await this.o.results.getMany(job.result.imageKeys));
    if (imgs.some((b) => b === null)) {
      // Settled as a success, nothing left to show: the failure posted says the quota was refunded, so it is first.
      await this.o.store.expireResult(job.id);
      return [{ body: failureBody(job.request, 'expired', null), files: [] }];
    }
    const refused = refusedOutputImage(imgs as Buffer[]);
    if (refused) {
      const message = text.resultRefused(refused);
      this.o.log.warn({ jobId: job.id, refused }, 'stored result refused by the output limits');
      await this.o.store.expireResult(job.id, { code: 'invalid_payload', message });
      return [{ body: failureBody(job.request, 'invalid_payload', message), files: [] }];
    }
    return composeResult(job, job.result, imgs as Buffer[], { results: this.o.results, now: this.o.now, cpu: this.o.cpu });
  }
}
