import type { Logger } from '../../core/io/logger.js';
import type { ResultStore } from '../../core/io/results.js';
import type { Delivered, JobStore, StoredJob } from '../../core/ports.js';
import type { Outbox } from './outbox.js';
import { failureBody } from './render.js';
import { composeResult, type OutgoingMessage } from './result-files.js';

export interface PostResultOptions {
  store: Pick<JobStore, 'markDelivered' | 'releaseDelivery'>;
  results: Pick<ResultStore, 'get' | 'getMany' | 'forget'>;
  outbox: Pick<Outbox, 'send' | 'sendMore' | 'pointToResult'>;
  log: Logger;
  now: () => number;
  /** Called once per delivery of a settled job, before posting (budget alerts, moderator notices). */
  afterSettle?: (job: StoredJob) => Promise<void>;
}

/**
 * Posts a settled job: its images (fitted, gridded, split over messages as the upload limit
 * requires) or its failure, through the outbox; then marks it delivered and drops its images from
 * Redis. A post that fails is released, so the next sweep (here or in another process) tries again.
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
    if (this.o.afterSettle)
      void this.o.afterSettle(job).catch((err: unknown) => this.o.log.warn({ err, jobId: job.id }, 'after-settle hook failed'));
    try {
      const messages = await this.compose(job, images);
      const [first, ...more] = messages;
      const sent = await this.o.outbox.send(job, first!.body, first!.files);
      const extraIds: string[] = [];
      for (const [n, m] of more.entries())
        extraIds.push(await this.o.outbox.sendMore(job, m.body, m.files, n + 1, sent.inChannel !== false));
      const messageId = sent.id;
      if (sent.inChannel === 'expired' && job.replyMessageId) await this.o.outbox.pointToResult(job, job.replyMessageId, messageId);
      this.posted.push({ job, jobId: job.id, messageId, extraIds });
      this.marking ??= this.markPosted();
      await this.marking;
      this.o.log.info({ jobId: job.id, status: job.status, messageId, messages: messages.length }, 'job delivered');
    } catch (err) {
      this.o.log.error({ err, jobId: job.id }, 'delivery failed; will retry');
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
      const withImages = batch.flatMap((d) => (d.job.result ? [{ jobId: d.jobId, imageKeys: d.job.result.imageKeys }] : []));
      await this.o.results
        .forget(withImages)
        .catch((err: unknown) => this.o.log.warn({ err }, 'could not drop delivered images; they expire'));
    }
    this.marking = undefined;
  }

  /** The message(s) a settled job is posted as: its result, or its failure (also when its images expired meanwhile). */
  private async compose(job: StoredJob, images: Buffer[] | null): Promise<OutgoingMessage[]> {
    if (job.status !== 'succeeded' || !job.result) {
      return [{ body: failureBody(job.request, job.errorCode ?? job.status, job.errorMessage), files: [] }];
    }
    const imgs = images ?? (await this.o.results.getMany(job.result.imageKeys));
    if (imgs.some((b) => b === null)) return [{ body: failureBody(job.request, 'expired', null), files: [] }];
    return composeResult(job, job.result, imgs as Buffer[], { results: this.o.results, now: this.o.now });
  }
}
