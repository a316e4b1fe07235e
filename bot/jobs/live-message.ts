import type { RawFile } from 'discord.js';
import type { FirstAnswer } from '../../commands/context.js';
import type { Logger } from '../../core/io/logger.js';
import type { InteractionRef } from '../../core/ports.js';
import { discordAnswer } from './outbox.js';
import type { MessageBody } from './render.js';

/** The two ways a live message is edited (bot/jobs/outbox.ts implements them). */
export interface LiveEdits {
  /** Through the interaction webhook while its token lives; returns the reply's message id. */
  editOriginal(ref: InteractionRef, body: MessageBody, files: RawFile[]): Promise<string>;
  /** With the bot's own token, once the interaction token is gone (the reply is the bot's message). */
  editInChannel(channelId: string, messageId: string, body: MessageBody, files: RawFile[]): Promise<void>;
}

export interface LiveMessageOptions {
  jobId: string;
  channelId: string;
  ref: InteractionRef;
  /** When the interaction was created (ms): its token dies tokenLifetimeMs later. */
  since: number;
  replyMessageId?: string | null;
  edits: LiveEdits;
  log: Logger;
  now: () => number;
  /** Least gap between two edits of this message (Discord's rate limits; ~1.5 s keeps well inside). */
  editIntervalMs: number;
  /** Interaction tokens last 15 minutes; past this age the reply is edited with the bot's token. */
  tokenLifetimeMs: number;
}

const noop = (): void => undefined;

/** A progress edit, made when its turn comes (its preview is fetched then, not when it was offered). */
export type ProgressEdit = () => Promise<{ body: MessageBody; files: RawFile[] }>;

/** Past the token's life with no reply id on record: there is no message the bot may edit. */
class ReplyUnknown extends Error {}

/**
 * One job's reply while it waits and runs. At most one edit per editIntervalMs; what waits for
 * the next slot is only the newest content, and progress wins over a queue position. Edits run one
 * at a time in the order they were started, and so does `inOrder` work (settling and posting the
 * result): once `close()`d nothing more is sent, so a late progress edit never overwrites a result.
 */
export class LiveMessage {
  private chain: Promise<void> = Promise.resolve();
  private lastEditAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private pendingProgress: ProgressEdit | undefined;
  private pendingPlace: MessageBody | undefined;
  private closed = false;
  /** Shutting down: edits already started finish, no new one is scheduled. */
  private halted = false;
  /** Whether the reply shows the job's place in the queue (false once it runs); position edits wait for nothing else. */
  private showsPlace = false;
  /** The position text last sent or due to be sent, so an unchanged place is not sent again. */
  shownPlace: string | undefined;
  /** The reply cannot be edited any more (deleted, or its token gone with no id known): no more position edits. */
  quiet = false;
  replyMessageId: string | undefined;

  constructor(private readonly o: LiveMessageOptions) {
    if (o.replyMessageId) this.replyMessageId = o.replyMessageId;
  }

  get jobId(): string {
    return this.o.jobId;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Whether an edit can still reach the reply: its token lives, or the bot knows the reply's id. */
  reachable(): boolean {
    return this.o.now() - this.o.since < this.o.tokenLifetimeMs || this.replyMessageId !== undefined;
  }

  /** Edits and `inOrder` work start only once `p` has settled (Discord's answer to the deferral). */
  after(p: Promise<unknown>): void {
    this.chain = this.chain.then(
      () => p.then(noop, noop),
      () => undefined,
    );
  }

  /**
   * Runs `work` after every edit already started (settling, posting the result). Its failure is
   * logged, never thrown: the caller has nothing more to do with it.
   */
  inOrder(work: () => Promise<void>, failure = 'message edit failed'): Promise<void> {
    this.chain = this.chain.then(work).catch((err: unknown) => this.o.log.warn({ err, jobId: this.o.jobId }, failure));
    return this.chain;
  }

  /**
   * The first edit of the reply (the job's place, just after it was queued): sent now, counted as
   * an edit from now, so a position refresh racing it waits its turn.
   */
  showFirst(body: MessageBody): Promise<void> {
    this.lastEditAt = this.o.now();
    this.shownPlace = body.content;
    return this.inOrder(async () => {
      if (this.closed) return;
      this.remember(await this.o.edits.editOriginal(this.o.ref, body, []));
      this.lastEditAt = this.o.now();
    });
  }

  /**
   * The job's place as the interaction's first answer: sent now, outside the chain of edits,
   * which waits for this very answer (see `after`). Counted as an edit from now. If the reply was
   * deferred meanwhile, the place is its first edit instead, in turn with the others.
   */
  answerFirst(body: MessageBody, answer: FirstAnswer): Promise<void> {
    this.lastEditAt = this.o.now();
    this.shownPlace = body.content;
    return answer(body).then(
      (id) => {
        if (id === 'deferred') return this.showFirst(body);
        if (id) this.remember(id);
        this.lastEditAt = this.o.now();
      },
      (err: unknown) => this.o.log.debug({ err, jobId: this.o.jobId }, 'first answer failed'),
    );
  }

  /** Counts an edit from now: the next one waits its turn (the first edit, the job's place, is on its way). */
  holdNextEdit(): void {
    this.lastEditAt = this.o.now();
  }

  /** The job waits in the queue (again): position edits are wanted; `fresh` forgets the place last shown. */
  waitInQueue(fresh = false): void {
    this.showsPlace = true;
    if (fresh) this.shownPlace = undefined;
  }

  /** The job runs: its place in the queue is history, and any position edit not yet sent is dropped. */
  running(): void {
    this.showsPlace = false;
    this.pendingPlace = undefined;
  }

  /** A new place to show at the next edit slot. */
  offerPlace(body: MessageBody): void {
    this.shownPlace = body.content;
    this.pendingPlace = body;
    this.schedule();
  }

  /** Progress to show at the next edit slot (only the newest is sent). */
  offerProgress(edit: ProgressEdit): void {
    this.pendingProgress = edit;
    this.schedule();
  }

  /** No more edits: the result is being posted, or the job is no longer followed here. */
  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Shutting down: no new edit is scheduled; those already started run to the end (see idle()). */
  halt(): void {
    this.halted = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Settles once every edit and every `inOrder` work started so far has finished. */
  idle(): Promise<void> {
    return this.chain;
  }

  private schedule(): void {
    if (this.timer || this.closed || this.halted) return;
    const delay = Math.max(0, this.lastEditAt + this.o.editIntervalMs - this.o.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const progress = this.pendingProgress;
      const place = this.pendingPlace;
      this.pendingProgress = undefined;
      this.pendingPlace = undefined;
      if (this.closed) return;
      if (progress) {
        this.lastEditAt = this.o.now();
        void this.inOrder(() => this.sendProgress(progress));
      } else if (place && this.showsPlace) {
        this.lastEditAt = this.o.now();
        void this.inOrder(() => this.sendPlace(place));
      }
    }, delay);
  }

  private async sendPlace(body: MessageBody): Promise<void> {
    if (this.closed || !this.showsPlace) return;
    try {
      await this.edit(body, []);
    } catch (err) {
      // Best effort like progress; a reply that is gone for good is not retried on every refresh.
      if (err instanceof ReplyUnknown || discordAnswer(err) !== 'failed') this.quiet = true;
      else this.shownPlace = undefined;
      this.o.log.debug({ err, jobId: this.o.jobId }, 'position edit skipped');
    }
    this.lastEditAt = this.o.now();
  }

  private async sendProgress(make: ProgressEdit): Promise<void> {
    if (this.closed) return;
    const { body, files } = await make();
    try {
      await this.edit(body, files);
    } catch (err) {
      // Progress is best effort; the final result has its own fallback path.
      this.o.log.debug({ err, jobId: this.o.jobId }, 'progress edit skipped');
    }
    this.lastEditAt = this.o.now();
  }

  /** Through the interaction webhook while the token lives, then with the bot's token on the channel route. */
  private async edit(body: MessageBody, files: RawFile[]): Promise<void> {
    if (this.o.now() - this.o.since < this.o.tokenLifetimeMs) {
      this.remember(await this.o.edits.editOriginal(this.o.ref, body, files));
      return;
    }
    if (!this.replyMessageId) throw new ReplyUnknown();
    await this.o.edits.editInChannel(this.o.channelId, this.replyMessageId, body, files);
  }

  /**
   * Keeps the reply's id for edits after the token expires. Only in memory: the sweep writes it to
   * Postgres for jobs still unfinished, so the many short jobs cost no extra statement.
   */
  private remember(id: string): void {
    this.replyMessageId ??= id;
  }
}
