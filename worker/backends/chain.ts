import {
  BrokenCircuitError,
  type CircuitBreakerPolicy,
  CircuitState,
  ConsecutiveBreaker,
  circuitBreaker,
  ExponentialBackoff,
  handleWhen,
  type IBreaker,
  type RetryPolicy,
  retry,
} from 'cockatiel';
import { isBoxFamily } from '../../core/backend-families.js';
import { reservationWanted } from '../../core/budget.js';
import { BackendError, isBackendError } from '../../core/errors.js';
import type { FailureCode } from '../../core/failures.js';
import type { Attempt, GenerationRequest } from '../../core/generation.js';
import type { Logger } from '../../core/io/logger.js';
import type { RemoteRun } from '../../core/io/results.js';
import { failureText } from '../../core/messages.js';
import { boxWait, shouldOverflow } from '../../core/overflow.js';
import type { BoxPool } from '../boxes/pool.js';
import type { PaidBudget, Reservation } from '../paid-budget.js';
import type { BackendJob, BackendOutput, BackendProgress, ImageBackend, RunContext, RunSettings } from './backend.js';

/** Final outcome of a chain that made no image; `userMessage` defaults to the code's member text. */
export class ChainError extends Error {
  override readonly name = 'ChainError';
  readonly userMessage: string;
  constructor(
    readonly code: FailureCode,
    readonly attempts: Attempt[],
    /** true when trying again later may work (everything was down or busy). */
    readonly retryable: boolean,
    userMessage?: string,
  ) {
    const message = userMessage ?? failureText[code];
    super(`${code}: ${message}`);
    this.userMessage = message;
  }
}

export interface ChainSuccess {
  backend: ImageBackend;
  output: BackendOutput;
  attempts: Attempt[];
  /** When the job did not run on the box it was meant for: why. */
  route?: 'overflow' | 'failover';
}

export interface ChainOptions {
  backends: readonly ImageBackend[];
  log: Logger;
  /** Price of an attempt in dollars (`output` says how the provider bills it). */
  price: (
    backend: ImageBackend,
    request: GenerationRequest,
    billedSeconds: number,
    billedImages: number,
    output: Pick<BackendOutput, 'usdPerImage'>,
  ) => number;
  /**
   * A paid backend billing by run time: the seconds `usd` buys there with these settings (the cap
   * on an attempt's run time); undefined where the price is known before the run (per image).
   */
  secondsFor?: (backend: ImageBackend, settings: RunSettings, usd: number) => number | undefined;
  /** About what a job would cost on a backend, before it runs (the price a member sees, the budget an attempt needs). */
  estimate?: (backend: ImageBackend, job: BackendJob) => number;
  /** Consecutive failures that open a backend's circuit. */
  breakerThreshold?: number;
  /** How often open circuits are probed with the backend's health check (the probe is the only half-open trial). */
  probeIntervalMs?: number;
  /** Longest 429 Retry-After worth waiting for on the same backend before moving on. */
  maxRetryAfterS?: number;
  /**
   * GPU boxes' leases and line, shared by every worker (Redis). Without it (one process, tests),
   * boxes are tried in turn like any backend, one job at a time per box within this process only.
   */
  pool?: BoxPool;
  /** OVERFLOW_AFTER_S: a job expected to wait longer for a box goes to the first cloud backend (0 = never). */
  overflowAfterS?: number;
}

/** A job waiting for a box: where it stands, and the paid backend it may still go to. */
export interface WaitingReport {
  ahead: number;
  start: { lowMs: number; highMs: number } | null;
  fallback?: { backend: string; usd: number; overflowAfterS: number };
}

export interface RunOptions {
  /** The guild's budget for paid providers; without it, `paidAllowed` says yes or no to all. */
  budget?: PaidBudget;
  paidAllowed?: boolean;
  onAttempt?: (backend: ImageBackend) => void;
  /** The job's place in the boxes' line: BullMQ's priority and when it was queued. */
  queue?: { priority: number; arrivedAt: number };
  onWaiting?: (w: WaitingReport) => void;
  /** The job goes elsewhere than the box it was meant for (before that attempt starts). */
  onRoute?: (r: { reason: 'overflow' | 'failover'; backend: ImageBackend; usd: number }) => void;
  /** false: the GPU boxes may not serve this job (the operator does not share them with its guild); cloud only. */
  boxes?: boolean;
  /** A paid run started at its provider (with its reservation, if any): recorded before it is polled. */
  onRemoteRun?: (run: RemoteRun) => Promise<void>;
}

export type CircuitName = 'closed' | 'open' | 'half-open' | 'isolated';

/**
 * Consecutive failures open the circuit (cockatiel's ConsecutiveBreaker), and so does a single
 * failure the backend marks fatal (a box that stopped answering or moving): the chain calls
 * tripNext() just before that failure reaches the breaker.
 */
class TripBreaker implements IBreaker {
  private readonly inner: ConsecutiveBreaker;
  private tripped = false;

  constructor(threshold: number) {
    this.inner = new ConsecutiveBreaker(threshold);
  }

  get state(): unknown {
    return this.inner.state;
  }

  set state(value: unknown) {
    this.inner.state = Number(value) || 0;
  }

  tripNext(): void {
    this.tripped = true;
  }

  success(): void {
    this.tripped = false;
    this.inner.success();
  }

  failure(): boolean {
    const tripped = this.tripped;
    this.tripped = false;
    return this.inner.failure() || tripped;
  }
}

interface Link {
  backend: ImageBackend;
  breaker: CircuitBreakerPolicy;
  trip: TripBreaker;
  retry: RetryPolicy;
}

/** A link the job can run on, with its settings there. */
interface Planned {
  link: Link;
  settings: RunSettings;
}

type Step = { kind: 'boxes'; planned: Planned[] } | { kind: 'one'; planned: Planned };

interface RunState {
  attempts: Attempt[];
  skippedForBudget: number;
  rejected?: BackendError;
}

function unsupportedReason(backend: ImageBackend, r: GenerationRequest): string | null {
  const c = backend.capabilities;
  if (!c.kinds.includes(r.kind)) return `cannot do ${r.kind}`;
  const limit = Math.min(c.maxPixels, c.maxPixelsByKind?.[r.kind] ?? Infinity);
  if (r.width * r.height > limit) return `cannot make ${r.kind} at ${r.width}×${r.height} (at most ${limit} pixels)`;
  return null;
}

const circuitName = (s: CircuitState): CircuitName =>
  s === CircuitState.Closed ? 'closed' : s === CircuitState.Open ? 'open' : s === CircuitState.HalfOpen ? 'half-open' : 'isolated';

const round3 = (s: number) => Math.round(s * 1000) / 1000;

/**
 * The fallback chain: backends in BACKENDS order, each behind a circuit breaker (cockatiel).
 *
 * - GPU boxes form one pool at the place of the first box family: a job waits in the shared line
 *   for the first free box (every worker's jobs in one line, BullMQ priority then arrival) and may
 *   talk to a box only while it holds the box's lease. While it waits, a job whose expected wait
 *   passes OVERFLOW_AFTER_S goes to the first cloud backend instead, if the guild's budget allows;
 *   if the cloud fails too, it comes back to wait for a box.
 * - A circuit that is not closed is skipped, half-open included: members' jobs are never the trial.
 *   Only the health probes, every probeIntervalMs, are; a healthy probe closes the circuit.
 * - A box that stops answering (or moving) opens its circuit at once, for every worker (the shared
 *   circuit in Redis), so the next jobs do not each pay the detection time.
 * - Transient errors are retried once on the same backend (honouring a short Retry-After), except
 *   a failure that opened the circuit; a 4xx-style rejection moves on without a retry; content
 *   flagged unsafe or a cancel ends the chain (shopping around for a laxer provider would defeat
 *   the safety check).
 */
export class BackendChain {
  private readonly links: Link[];
  private probeTimer: NodeJS.Timeout | undefined;
  private readonly probeMs: number;

  constructor(private readonly o: ChainOptions) {
    const maxWaitS = o.maxRetryAfterS ?? 5;
    this.probeMs = o.probeIntervalMs ?? 5000;
    this.links = o.backends.map((backend) => {
      const trip = new TripBreaker(o.breakerThreshold ?? 3);
      return {
        backend,
        trip,
        breaker: circuitBreaker(
          handleWhen((err) => isBackendError(err) && err.retryable && err.kind !== 'busy'),
          // Members never call a circuit that is not closed, so the half-open trial is always a probe.
          { halfOpenAfter: this.probeMs, breaker: trip },
        ),
        retry: retry(
          handleWhen(
            (err) =>
              isBackendError(err) &&
              err.retryable &&
              !err.opensCircuit &&
              err.kind !== 'timeout' &&
              // A paid run that failed was billed: trying again would need budget set aside anew,
              // unless the backend resumes it, paying only for what the first try did not make.
              !(err.billed && err.billed.seconds > 0 && !err.resumable) &&
              (err.retryAfterS === undefined || err.retryAfterS <= maxWaitS),
          ),
          { maxAttempts: 1, backoff: new ExponentialBackoff({ initialDelay: 150, maxDelay: maxWaitS * 1000 }) },
        ),
      };
    });
    for (const l of this.links) {
      l.breaker.onStateChange((s) => o.log.warn({ backend: l.backend.id, circuit: circuitName(s) }, 'circuit state changed'));
      const box = l.backend.box;
      if (box && o.pool) {
        const pool = o.pool;
        l.breaker.onBreak((reason) => {
          const why = 'error' in reason ? String((reason.error as Error)?.message ?? reason.error) : 'isolated';
          void pool.openCircuit(box.id, why).catch((err: unknown) => o.log.warn({ err }, 'could not share the open circuit'));
        });
        l.breaker.onReset(
          () => void pool.closeCircuit(box.id).catch((err: unknown) => o.log.warn({ err }, 'could not share the closed circuit')),
        );
      }
    }
  }

  get backends(): readonly ImageBackend[] {
    return this.o.backends;
  }

  circuitState(backendId: string): CircuitName | undefined {
    const link = this.links.find((l) => l.backend.id === backendId);
    return link ? circuitName(link.breaker.state) : undefined;
  }

  /**
   * A paid run a dead worker's try of this job left at its provider (`run`, from the job's record):
   * stopped if it still runs, and returned as an attempt at what the provider bills for it, priced
   * as the chain prices any attempt. null when no backend here can ask for it (its backend is gone
   * from this worker's configuration); throws a BackendError when the provider cannot be asked.
   */
  async reclaim(run: RemoteRun, request: GenerationRequest, signal?: AbortSignal): Promise<Attempt | null> {
    const backend = this.o.backends.find((b) => b.id === run.backend);
    if (!backend?.reclaim) return null;
    const found = await backend.reclaim(run.ref, {
      ...(run.usdPerImage !== undefined ? { usdPerImage: run.usdPerImage } : {}),
      ...(signal ? { signal } : {}),
    });
    const { billed } = found;
    const costUsd = this.o.price(
      backend,
      request,
      billed.seconds,
      billed.images,
      billed.usdPerImage !== undefined ? { usdPerImage: billed.usdPerImage } : {},
    );
    this.o.log.warn(
      { backend: backend.id, ref: run.ref, status: found.status, cancelled: found.cancelled, costUsd },
      'reclaimed a paid run a dead worker left',
    );
    return {
      backend: backend.id,
      outcome: found.cancelled || found.status === 'canceled' ? 'cancelled' : 'failed',
      seconds: round3(billed.seconds),
      costUsd,
      errorKind: 'orphaned',
      detail: `left ${found.status} by a worker that died`,
      ref: run.ref,
    };
  }

  /** Starts probing open circuits with each backend's health check; a healthy probe closes the circuit. */
  startProbes(): void {
    this.probeTimer = setInterval(() => void this.probeOpenCircuits(), Math.max(100, Math.floor(this.probeMs / 2)));
    this.probeTimer.unref();
  }

  stopProbes(): void {
    if (this.probeTimer) clearInterval(this.probeTimer);
  }

  /**
   * The health probes: each backend whose circuit is open here, or whose box another worker took
   * for broken, is asked for its health. Here the probe is the half-open trial (once the circuit
   * has been open probeIntervalMs); a healthy box's shared circuit closes once it has been open as long.
   */
  async probeOpenCircuits(): Promise<void> {
    const boxes = this.links.flatMap((l) => (l.backend.box ? [l.backend.box.id] : []));
    const shared = this.o.pool && boxes.length > 0 ? await this.o.pool.openCircuits(boxes).catch(() => new Map()) : new Map();
    await Promise.all(
      this.links.map(async (l) => {
        const state = l.breaker.state;
        const sharedOpen = l.backend.box ? shared.get(l.backend.box.id) : undefined;
        if ((state === CircuitState.Closed && !sharedOpen) || state === CircuitState.HalfOpen) return;
        let healthy = false;
        try {
          if (state === CircuitState.Closed) {
            healthy = (await l.backend.health(AbortSignal.timeout(3000), { circuitOpen: true })).ok;
          } else {
            await l.breaker.execute(async () => {
              const h = await l.backend.health(AbortSignal.timeout(3000), { circuitOpen: true });
              if (!h.ok) throw new BackendError(l.backend.id, 'unavailable', `health probe: ${h.detail}`);
            });
            healthy = true;
          }
        } catch {
          // Still broken (or not yet time for a trial): stays open.
        }
        if (healthy && sharedOpen && l.backend.box && Date.now() - sharedOpen.at >= this.probeMs) {
          await this.o.pool?.closeCircuit(l.backend.box.id).catch(() => undefined);
        }
      }),
    );
  }

  /**
   * The job's plan: the links that can run it, with their settings, in BACKENDS order; boxes
   * gathered in one step at the first box's place. Links that cannot are logged and counted.
   */
  private plan(job: BackendJob, refusals: string[]): Step[] {
    const steps: Step[] = [];
    let boxes: Extract<Step, { kind: 'boxes' }> | undefined;
    const seenBoxes = new Set<string>();
    for (const link of this.links) {
      const { backend } = link;
      const reason = unsupportedReason(backend, job.request);
      if (reason) {
        this.o.log.info({ backend: backend.id, reason }, 'backend skipped: unsupported');
        continue;
      }
      const settings = backend.settingsFor(job.request);
      if ('refused' in settings) {
        refusals.push(settings.refused);
        this.o.log.info({ backend: backend.id, reason: settings.refused }, 'backend skipped: preset');
        continue;
      }
      const planned = { link, settings };
      if (isBoxFamily(backend.family)) {
        // The same box listed twice (in A1111_URL and again) is one box.
        if (backend.box && seenBoxes.has(backend.box.id)) continue;
        if (backend.box) seenBoxes.add(backend.box.id);
        if (!boxes) {
          boxes = { kind: 'boxes', planned: [] };
          steps.push(boxes);
        }
        boxes.planned.push(planned);
      } else {
        steps.push({ kind: 'one', planned });
      }
    }
    return steps;
  }

  /**
   * Without shared leases: boxes of one family least busy first (in this process), ties broken at
   * random so several processes spread over the boxes instead of all choosing the first.
   */
  private leastBusy(planned: readonly Planned[]): Planned[] {
    return planned
      .map((p) => ({ p, key: p.link.backend.inFlight + Math.random() * 0.5 }))
      .sort((a, b) => a.key - b.key)
      .map((x) => x.p);
  }

  async run(job: BackendJob, ctx: RunContext, opts: RunOptions): Promise<ChainSuccess> {
    const budget: PaidBudget = opts.budget ?? {
      allows: () => opts.paidAllowed ?? false,
      reserve: async (_b, o) => (opts.paidAllowed ? { usd: o.wantUsd, settle: async () => undefined } : null),
    };
    const st: RunState = { attempts: [], skippedForBudget: 0 };
    // Backends report progress freely; a failing report (a preview upload) must never end the job.
    const onProgress = (p: BackendProgress): void => {
      try {
        const out: unknown = ctx.onProgress(p);
        if (out instanceof Promise) out.catch((err: unknown) => this.o.log.warn({ err, jobId: job.jobId }, 'progress report failed'));
      } catch (err) {
        this.o.log.warn({ err, jobId: job.jobId }, 'progress report failed');
      }
    };
    const runCtx: RunContext = { signal: ctx.signal, onProgress };
    const refusals: string[] = [];
    const steps = this.plan(job, refusals).filter((s) => opts.boxes !== false || s.kind !== 'boxes');
    const boxStep = steps.find((s): s is Extract<Step, { kind: 'boxes' }> => s.kind === 'boxes');
    const clouds = steps.flatMap((s) => (s.kind === 'one' && !isBoxFamily(s.planned.link.backend.family) ? [s.planned] : []));
    let overflowed = false;
    let pastBoxes = false;
    for (const step of steps) {
      if (ctx.signal.aborted) break;
      if (step.kind === 'boxes') {
        const r = await this.runOnBoxes(step.planned, job, runCtx, opts, budget, st, { mayOverflow: true, clouds });
        if (r.kind === 'success') return r.success;
        overflowed = r.kind === 'overflow';
        pastBoxes = true;
        continue;
      }
      const route = pastBoxes ? (overflowed ? 'overflow' : 'failover') : undefined;
      const out = await this.attempt(step.planned, job, runCtx, runCtx, opts, budget, st, route);
      if (out) return out;
    }
    if (overflowed && boxStep && !ctx.signal.aborted) {
      // Sent to the cloud because the box was busy, and the cloud failed: wait for the box after all.
      const r = await this.runOnBoxes(boxStep.planned, job, runCtx, opts, budget, st, { mayOverflow: false, clouds });
      if (r.kind === 'success') return r.success;
    }
    return this.fail(job, st, ctx.signal, steps.length === 0 ? refusals : undefined);
  }

  /** The chain made no image: the failure that best says why. */
  private fail(job: BackendJob, st: RunState, signal: AbortSignal, refusals?: string[]): never {
    const { attempts } = st;
    if (signal.aborted) throw new ChainError('cancelled', attempts, false);
    if (refusals) {
      const preset = refusals.length > 0 && refusals.every((r) => r.startsWith('preset') || r.startsWith('unknown preset'));
      throw new ChainError(
        'unsupported',
        attempts,
        false,
        preset ? `no image backend here runs the preset \`${job.request.preset}\`.` : undefined,
      );
    }
    const tried = attempts.filter((a) => a.outcome === 'failed').length;
    if (st.skippedForBudget > 0 && tried === 0 && attempts.every((a) => a.outcome === 'skipped' && a.detail === 'budget spent')) {
      throw new ChainError('budget_spent', attempts, false);
    }
    if (st.rejected && attempts.every((a) => a.outcome !== 'failed' || a.errorKind === 'rejected')) {
      throw new ChainError('rejected', attempts, false);
    }
    // Everything down, busy or open-circuited: BullMQ retries later, when circuits may have closed.
    throw new ChainError('all_backends_failed', attempts, true);
  }

  /**
   * One attempt on one backend: skipped when its circuit is not closed or the budget says no;
   * otherwise run, priced and recorded. Returns the success, or undefined to move on; throws a
   * ChainError when the chain must end (cancelled, unsafe).
   */
  private async attempt(
    p: Planned,
    job: BackendJob,
    jobCtx: RunContext,
    runCtx: RunContext,
    opts: RunOptions,
    budget: PaidBudget,
    st: RunState,
    route?: 'overflow' | 'failover',
  ): Promise<ChainSuccess | undefined> {
    const { link, settings } = p;
    const { backend } = link;
    if (link.breaker.state !== CircuitState.Closed) {
      // Open or half-open: the probe, not a member's job, finds out whether it recovered.
      st.attempts.push({ backend: backend.id, outcome: 'skipped', seconds: 0, costUsd: 0, detail: 'circuit open' });
      return undefined;
    }
    const withSettings: BackendJob = { ...job, settings };
    const usd = this.o.estimate?.(backend, withSettings) ?? 0;
    let reservation: Reservation | null = null;
    let attemptCtx = runCtx;
    if (backend.capabilities.paid) {
      const secondsPerUsd = this.o.secondsFor?.(backend, settings, 1);
      const usdPerSecond = secondsPerUsd !== undefined && secondsPerUsd > 0 ? 1 / secondsPerUsd : undefined;
      reservation = await budget.reserve(backend.id, reservationWanted(usd, usdPerSecond), jobCtx.signal);
      if (!reservation) {
        if (jobCtx.signal.aborted) throw new ChainError('cancelled', st.attempts, false);
        st.skippedForBudget++;
        st.attempts.push({ backend: backend.id, outcome: 'skipped', seconds: 0, costUsd: 0, detail: 'budget spent' });
        return undefined;
      }
      const maxBilledSeconds = this.o.secondsFor?.(backend, settings, reservation.usd);
      if (maxBilledSeconds !== undefined) attemptCtx = { ...runCtx, maxBilledSeconds };
    }
    /** The provider's id of the paid run, once it named it: the attempt is booked with it. */
    const ref: { id?: string } = {};
    if (backend.capabilities.paid && opts.onRemoteRun) {
      const record = opts.onRemoteRun;
      const key = reservation?.key;
      attemptCtx = {
        ...attemptCtx,
        onRemoteRun: (id, o) => {
          ref.id = id;
          return record({ backend: backend.id, ref: id, ...o, ...(key ? { reservation: key } : {}) });
        },
      };
    }
    /** What the attempt billed, for its reservation (whatever the outcome). */
    let billedUsd = 0;
    try {
      if (jobCtx.signal.aborted) throw new ChainError('cancelled', st.attempts, false);
      if (route) opts.onRoute?.({ reason: route, backend, usd });
      return await this.run1(link, backend, withSettings, job, attemptCtx, jobCtx, opts, st, route, (c) => (billedUsd = c), ref);
    } finally {
      await reservation?.settle(billedUsd);
    }
  }

  /** The attempt itself, once the budget allowed it: run, priced (a failure at what the provider billed), recorded. */
  private async run1(
    link: Link,
    backend: ImageBackend,
    withSettings: BackendJob,
    job: BackendJob,
    runCtx: RunContext,
    jobCtx: RunContext,
    opts: RunOptions,
    st: RunState,
    route: 'overflow' | 'failover' | undefined,
    onBilled: (usd: number) => void,
    ref: { id?: string } = {},
  ): Promise<ChainSuccess | undefined> {
    const started = performance.now();
    try {
      const output = await link.breaker.execute(async () => {
        try {
          return await link.retry.execute(() => {
            opts.onAttempt?.(backend);
            return backend.generate(withSettings, runCtx);
          });
        } catch (err) {
          if (isBackendError(err) && err.opensCircuit) link.trip.tripNext();
          throw err;
        }
      });
      const cost = this.o.price(backend, job.request, output.billedSeconds, output.billedImages, output);
      onBilled(cost);
      st.attempts.push({
        backend: backend.id,
        outcome: 'succeeded',
        seconds: output.billedSeconds,
        costUsd: cost,
        ...(ref.id ? { ref: ref.id } : {}),
      });
      return { backend, output, attempts: st.attempts, ...(route ? { route } : {}) };
    } catch (err) {
      if (err instanceof BrokenCircuitError) {
        st.attempts.push({ backend: backend.id, outcome: 'skipped', seconds: 0, costUsd: 0, detail: 'circuit open' });
        return undefined;
      }
      const seconds = (performance.now() - started) / 1000;
      const be = isBackendError(err) ? err : new BackendError(backend.id, 'bad-response', String(err), { cause: err });
      this.o.log.warn({ backend: backend.id, kind: be.kind, status: be.status, err: be }, 'backend attempt failed');
      // Providers bill failed and cancelled runs too: booked at what they bill.
      const billed = be.billed;
      const cost = billed
        ? this.o.price(
            backend,
            job.request,
            billed.seconds,
            billed.images,
            billed.usdPerImage !== undefined ? { usdPerImage: billed.usdPerImage } : {},
          )
        : 0;
      onBilled(cost);
      st.attempts.push({
        backend: backend.id,
        outcome: be.kind === 'cancelled' ? 'cancelled' : 'failed',
        seconds: round3(billed ? billed.seconds : seconds),
        costUsd: cost,
        errorKind: be.kind,
        ...(ref.id ? { ref: ref.id } : {}),
      });
      if (be.kind === 'cancelled' || jobCtx.signal.aborted) throw new ChainError('cancelled', st.attempts, false);
      if (be.kind === 'unsafe') throw new ChainError('unsafe', st.attempts, false);
      if (be.kind === 'rejected') st.rejected = be;
      return undefined;
    }
  }

  /**
   * The boxes' step. With shared leases: wait in the line for the first free box, run there while
   * holding its lease, and after a failure wait for another box; leave the line for the cloud when
   * the expected wait passes OVERFLOW_AFTER_S (and `mayOverflow`). Without: each box in turn.
   */
  private async runOnBoxes(
    planned: readonly Planned[],
    job: BackendJob,
    ctx: RunContext,
    opts: RunOptions,
    budget: PaidBudget,
    st: RunState,
    o: { mayOverflow: boolean; clouds: readonly Planned[] },
  ): Promise<{ kind: 'success'; success: ChainSuccess } | { kind: 'overflow' } | { kind: 'none' }> {
    const pool = this.o.pool;
    if (!pool || planned.some((p) => !p.link.backend.box)) {
      for (const p of this.leastBusy(planned)) {
        const out = await this.attempt(p, job, ctx, ctx, opts, budget, st);
        if (out) return { kind: 'success', success: out };
      }
      return { kind: 'none' };
    }
    const done = new Set<string>();
    const waiter = { jobId: job.jobId, priority: opts.queue?.priority ?? 0, arrivedAt: opts.queue?.arrivedAt ?? Date.now() };
    let lastReport = '';
    for (;;) {
      if (ctx.signal.aborted) throw new ChainError('cancelled', st.attempts, false);
      const candidates = planned.filter((p) => !done.has(p.link.backend.id));
      for (const p of candidates.filter((c) => c.link.breaker.state !== CircuitState.Closed)) {
        done.add(p.link.backend.id);
        st.attempts.push({ backend: p.link.backend.id, outcome: 'skipped', seconds: 0, costUsd: 0, detail: 'circuit open' });
      }
      const open = candidates.filter((p) => p.link.breaker.state === CircuitState.Closed);
      if (open.length === 0) return { kind: 'none' };
      const outcome = await pool.wait(
        { ...waiter, boxes: open.map((p) => p.link.backend.box!.id) },
        {
          signal: ctx.signal,
          onWaiting: async (w) => {
            const wait = boxWait({ ahead: w.ahead, usable: w.usable, busyElapsedMs: w.busyElapsedMs, samples: await pool.recentRuns() });
            const cloud = o.clouds.find((c) => c.link.breaker.state === CircuitState.Closed);
            const usd = cloud ? (this.o.estimate?.(cloud.link.backend, { ...job, settings: cloud.settings }) ?? 0) : 0;
            const paid = cloud?.link.backend.capabilities.paid ?? false;
            const allowed = cloud !== undefined && (!paid || budget.allows(usd));
            const report: WaitingReport = {
              ahead: w.ahead,
              start: wait ? { lowMs: wait.lowMs, highMs: wait.highMs } : null,
              ...(cloud && allowed && paid
                ? { fallback: { backend: cloud.link.backend.id, usd, overflowAfterS: this.o.overflowAfterS ?? 0 } }
                : {}),
            };
            const key = JSON.stringify([report.ahead, Math.round((wait?.meanMs ?? -1) / 1000), report.fallback?.backend]);
            if (key !== lastReport) {
              lastReport = key;
              opts.onWaiting?.(report);
            }
            const go =
              o.mayOverflow &&
              shouldOverflow({
                expectedWaitMs: wait?.meanMs ?? null,
                overflowAfterS: this.o.overflowAfterS ?? 0,
                cloudAvailable: cloud !== undefined,
                budgetAllows: allowed,
              });
            if (go)
              this.o.log.info({ jobId: job.jobId, expectedWaitMs: Math.round(wait!.meanMs), ahead: w.ahead }, 'box busy: overflowing');
            return go;
          },
        },
      );
      if (outcome.kind === 'left') {
        if (ctx.signal.aborted) throw new ChainError('cancelled', st.attempts, false);
        return { kind: 'overflow' };
      }
      if (outcome.kind === 'closed') {
        for (const p of open)
          st.attempts.push({ backend: p.link.backend.id, outcome: 'skipped', seconds: 0, costUsd: 0, detail: 'circuit open' });
        return { kind: 'none' };
      }
      const p = open.find((c) => c.link.backend.box!.id === outcome.box)!;
      const hold = pool.hold(outcome, p.link.backend.id);
      const started = performance.now();
      let out: ChainSuccess | undefined;
      try {
        const boxCtx: RunContext = { ...ctx, signal: AbortSignal.any([ctx.signal, hold.signal]), lease: hold };
        out = await this.attempt(p, job, ctx, boxCtx, opts, budget, st);
      } finally {
        // Released the moment the box has answered, before the images are stored; not awaited: it
        // leaves on the worker's connection ahead of the result's images, so the job does not wait
        // a round trip for it (a failed release is logged; the lease lapses). A success is a clean
        // handover (the box answered, nothing of ours runs there) and carries the run time.
        void hold.release(out ? { clean: true, run: { ms: performance.now() - started, count: job.request.count } } : {});
      }
      if (out) return { kind: 'success', success: out };
      // Lost the box to another job (a stall past the lease): wait again; any other failure: try another box.
      if (!hold.signal.aborted) done.add(p.link.backend.id);
    }
  }
}
