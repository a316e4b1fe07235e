import { TimeoutStrategy, timeout } from 'cockatiel';
import type { Redis } from 'ioredis';
import { BackendError } from '../../core/errors.js';
import type { DurationSample } from '../../core/eta.js';
import type { Logger } from '../../core/io/logger.js';
import { type AcquireResult, type BoxLeases, CLEAN_HANDOVER_MS, type ReleaseOptions, type SharedCircuit, type Waiter } from './leases.js';

/** How long a lease renewal may take before it counts as failed (capped at a sixth of the lease). */
const RENEW_ANSWER_MS = 1000;

/** Why a job stopped waiting without a box. */
export type WaitOutcome = Extract<AcquireResult, { kind: 'granted' }> | { kind: 'closed' } | { kind: 'left' };

/** While a job waits: what it learns on each try; returning true makes it leave the line (overflow). */
export type OnWaiting = (w: Extract<AcquireResult, { kind: 'waiting' }>) => boolean | Promise<boolean>;

/**
 * A job's hold on a box while it runs there. The lease is renewed every third of its life and
 * checked (fencing token compare) before every request the job sends the box. When it is lost (the
 * worker stalled past the lease time and another job got the box) `signal` aborts with a 'busy'
 * error and the job leaves the box alone. While Redis cannot be reached the lease still counts as
 * ours until two thirds of its life have passed since it was last confirmed. A renewal that does not
 * answer within RENEW_ANSWER_MS counts as failed: the worker's Redis connection queues commands
 * while disconnected, so during a Redis restart a renewal neither succeeds nor fails, it waits.
 */
export class LeaseHold {
  private confirmedAt = performance.now();
  private lost = false;
  /** The renewal on the wire, shared by every caller until it answers (a queued one is not sent twice). */
  private renewal: Promise<boolean> | undefined;
  private readonly answerInTime: ReturnType<typeof timeout>;
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout;

  /**
   * The box's previous lease was released cleanly (its job's box had answered) at most
   * CLEAN_HANDOVER_MS before this one was granted, with no lease between: nothing of ours runs on
   * the box, so a backend may skip asking whether it is idle before its first request.
   */
  private knownIdle: boolean;

  constructor(
    private readonly leases: BoxLeases,
    readonly box: string,
    readonly fence: number,
    private readonly backendId: string,
    private readonly log: Logger,
    handoverMs?: number,
  ) {
    this.knownIdle = handoverMs !== undefined && handoverMs <= CLEAN_HANDOVER_MS;
    // Aggressive: stop waiting even though the queued command cannot be called back.
    this.answerInTime = timeout(Math.min(RENEW_ANSWER_MS, Math.floor(leases.leaseMs / 6)), TimeoutStrategy.Aggressive);
    this.timer = setInterval(() => void this.check(), Math.max(50, Math.floor(leases.leaseMs / 3)));
    this.timer.unref();
  }

  /** See {@link knownIdle}: true at most once, for the lease's first request. */
  takeKnownIdle(): boolean {
    const idle = this.knownIdle;
    this.knownIdle = false;
    return idle;
  }

  /** Aborted when the lease is lost or about to lapse unconfirmed. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /**
   * Whether the box is still ours; asked immediately before every request to it. A lease renewed
   * less than a quarter of its life ago cannot have lapsed and gone to another job (only its expiry
   * or our own release can end it), so that answer needs no round trip; otherwise the lease is
   * renewed with a compare of the fencing token. Answers within RENEW_ANSWER_MS whatever Redis does.
   */
  async holds(): Promise<boolean> {
    if (this.lost) return false;
    if (performance.now() - this.confirmedAt < this.leases.leaseMs / 4) return true;
    try {
      const renewal = this.renew();
      return await this.answerInTime.execute(() => renewal);
    } catch (err) {
      if (this.lost) return false;
      const ok = performance.now() - this.confirmedAt < (this.leases.leaseMs * 2) / 3;
      if (!ok) this.lose(`the lease could not be renewed (${err instanceof Error ? err.message : String(err)})`);
      return ok;
    }
  }

  /** One renewal at a time; its answer counts whenever it comes, even after callers stopped waiting. */
  private renew(): Promise<boolean> {
    if (this.renewal) return this.renewal;
    const sent = performance.now();
    const renewal = this.leases.renew(this.box, this.fence).then(
      (ours) => {
        this.renewal = undefined;
        // The lease was set to leaseMs no earlier than `sent`; a later confirmation is not undone.
        if (ours) this.confirmedAt = Math.max(this.confirmedAt, sent);
        else this.lose('another job holds the box now');
        return ours && !this.lost;
      },
      (err: unknown) => {
        this.renewal = undefined;
        throw err;
      },
    );
    // Nobody may be waiting any more when it fails (they timed out): not an unhandled rejection.
    renewal.catch(() => undefined);
    this.renewal = renewal;
    return renewal;
  }

  private async check(): Promise<void> {
    await this.holds();
  }

  private lose(why: string): void {
    if (this.lost) return;
    this.lost = true;
    clearInterval(this.timer);
    this.log.warn({ box: this.box, fence: this.fence, why }, 'lease on the GPU box lost');
    this.controller.abort(new BackendError(this.backendId, 'busy', `lost the lease on the box: ${why}`, { retryable: false }));
  }

  /**
   * Done with the box: stop renewing and free it for the next job (unless it is no longer ours).
   * `run` is recorded either way (same round trip); `clean` only counts while the lease is ours.
   */
  async release(o: ReleaseOptions = {}): Promise<void> {
    clearInterval(this.timer);
    if (this.lost) {
      if (o.run) await this.leases.release(this.box, this.fence, { run: o.run }).catch(() => undefined);
      return;
    }
    this.lost = true;
    await this.leases.release(this.box, this.fence, o).catch((err: unknown) => {
      this.log.warn({ err, box: this.box }, 'lease release failed; it lapses by itself');
    });
  }
}

/**
 * The boxes' line as this worker process sees it: jobs wait their turn (woken when a lease is
 * released, a waiter that was next for a free box leaves the line, or a circuit changes, and by a
 * short poll that catches leases of killed workers lapsing), then hold the box they were granted.
 */
export class BoxPool {
  /** Sleeping waiters: the job each belongs to, and how to wake it. */
  private readonly wakers = new Map<() => void, string>();
  private readonly pollMs: number;
  /** Wake-ups heard so far: a wake-up that lands between a try and the nap after it is not slept through. */
  private wakes = 0;

  private constructor(
    readonly leases: BoxLeases,
    private readonly log: Logger,
  ) {
    this.pollMs = Math.max(50, Math.min(1000, Math.floor(leases.leaseMs / 3)));
  }

  /** Subscribes `subscriber` (a connection in subscriber mode; it may carry other channels) to the wake-ups. */
  static async start(leases: BoxLeases, subscriber: Redis, log: Logger): Promise<BoxPool> {
    const pool = new BoxPool(leases, log);
    subscriber.on('message', (channel: string, message: string) => {
      if (channel !== leases.wakeChannel) return;
      const next = message.split(' ')[1];
      if (next) pool.wake(next);
      else pool.wakeAll();
    });
    await subscriber.subscribe(leases.wakeChannel);
    return pool;
  }

  private wakeAll(): void {
    this.wakes++;
    const all = [...this.wakers.keys()];
    this.wakers.clear();
    for (const w of all) w();
  }

  /** A box was freed for this job: it alone needs to look now (if it waits in this process). */
  private wake(jobId: string): void {
    this.wakes++;
    for (const [w, id] of this.wakers) if (id === jobId) w();
  }

  private nap(jobId: string, signal: AbortSignal, wakesSeen: number): Promise<void> {
    // A wake-up that landed between the last try and now: look again at once.
    if (this.wakes !== wakesSeen) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.wakers.delete(done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const t = setTimeout(done, this.pollMs);
      this.wakers.set(done, jobId);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  /**
   * Waits in the line until a box is granted, every box's circuit is open, `onWaiting` decides the
   * job goes elsewhere, or `signal` aborts. A job that stops waiting leaves the line and has sent
   * no box anything.
   */
  async wait(w: Waiter, o: { signal: AbortSignal; onWaiting: OnWaiting }): Promise<WaitOutcome> {
    try {
      for (;;) {
        if (o.signal.aborted) {
          await this.leases.leave(w);
          return { kind: 'left' };
        }
        const wakesSeen = this.wakes;
        const r = await this.leases.tryAcquire(w, this.leases.leaseMs);
        if (r.kind !== 'waiting') return r;
        if (await o.onWaiting(r)) {
          await this.leases.leave(w);
          return { kind: 'left' };
        }
        await this.nap(w.jobId, o.signal, wakesSeen);
      }
    } catch (err) {
      await this.leases.leave(w).catch(() => undefined);
      throw err;
    }
  }

  hold(grant: { box: string; fence: number; handoverMs?: number }, backendId: string): LeaseHold {
    return new LeaseHold(this.leases, grant.box, grant.fence, backendId, this.log, grant.handoverMs);
  }

  recentRuns(): Promise<DurationSample[]> {
    return this.leases.recentRuns();
  }

  openCircuit(box: string, reason: string): Promise<void> {
    return this.leases.openCircuit(box, reason);
  }

  closeCircuit(box: string): Promise<void> {
    return this.leases.closeCircuit(box);
  }

  openCircuits(boxes: readonly string[]): Promise<Map<string, SharedCircuit>> {
    return this.leases.openCircuits(boxes);
  }
}
