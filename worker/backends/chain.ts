import {
  BrokenCircuitError,
  type CircuitBreakerPolicy,
  CircuitState,
  ConsecutiveBreaker,
  circuitBreaker,
  ExponentialBackoff,
  handleWhen,
  type RetryPolicy,
  retry,
} from 'cockatiel';
import { BackendError, isBackendError } from '../../core/errors.js';
import type { FailureCode } from '../../core/failures.js';
import type { Attempt, GenerationRequest } from '../../core/generation.js';
import type { Logger } from '../../core/io/logger.js';
import { failureText } from '../../core/messages.js';
import type { BackendJob, BackendOutput, BackendProgress, ImageBackend, RunContext } from './backend.js';

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
}

export interface ChainOptions {
  backends: readonly ImageBackend[];
  log: Logger;
  /** Price of an attempt in dollars. */
  price: (backend: ImageBackend, request: GenerationRequest, billedSeconds: number, billedImages: number) => number;
  /** Consecutive failures that open a backend's circuit. */
  breakerThreshold?: number;
  /** How often open circuits are probed with the backend's health check (the probe is the half-open trial). */
  probeIntervalMs?: number;
  /** Longest 429 Retry-After worth waiting for on the same backend before moving on. */
  maxRetryAfterS?: number;
}

export type CircuitName = 'closed' | 'open' | 'half-open' | 'isolated';

interface Link {
  backend: ImageBackend;
  breaker: CircuitBreakerPolicy;
  retry: RetryPolicy;
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

/**
 * The fallback chain: backends in BACKENDS order, each behind a circuit breaker (cockatiel).
 * An open circuit is skipped at once; transient errors are retried once on the same backend
 * (honouring a short Retry-After) and then the job moves on; a 4xx-style rejection moves on
 * without a retry; content flagged unsafe or a cancel ends the chain (shopping around for a
 * laxer provider would defeat the safety check).
 */
export class BackendChain {
  private readonly links: Link[];
  private probeTimer: NodeJS.Timeout | undefined;

  constructor(private readonly o: ChainOptions) {
    const maxWaitS = o.maxRetryAfterS ?? 5;
    this.links = o.backends.map((backend) => ({
      backend,
      breaker: circuitBreaker(
        handleWhen((err) => isBackendError(err) && err.retryable && err.kind !== 'busy'),
        {
          // The probe loop, not a member's job, is meant to be the half-open trial.
          halfOpenAfter: o.probeIntervalMs ?? 5000,
          breaker: new ConsecutiveBreaker(o.breakerThreshold ?? 3),
        },
      ),
      retry: retry(
        handleWhen(
          (err) =>
            isBackendError(err) &&
            err.retryable &&
            err.kind !== 'timeout' &&
            (err.retryAfterS === undefined || err.retryAfterS <= maxWaitS),
        ),
        { maxAttempts: 1, backoff: new ExponentialBackoff({ initialDelay: 150, maxDelay: maxWaitS * 1000 }) },
      ),
    }));
    for (const l of this.links) {
      l.breaker.onStateChange((s) => o.log.warn({ backend: l.backend.id, circuit: circuitName(s) }, 'circuit state changed'));
    }
  }

  get backends(): readonly ImageBackend[] {
    return this.o.backends;
  }

  circuitState(backendId: string): CircuitName | undefined {
    const link = this.links.find((l) => l.backend.id === backendId);
    return link ? circuitName(link.breaker.state) : undefined;
  }

  /** Starts probing open circuits with each backend's health check; a healthy probe closes the circuit. */
  startProbes(): void {
    const every = this.o.probeIntervalMs ?? 5000;
    this.probeTimer = setInterval(() => void this.probeOpenCircuits(), Math.max(100, Math.floor(every / 2)));
    this.probeTimer.unref();
  }

  stopProbes(): void {
    if (this.probeTimer) clearInterval(this.probeTimer);
  }

  async probeOpenCircuits(): Promise<void> {
    await Promise.all(
      this.links
        .filter((l) => l.breaker.state === CircuitState.Open)
        .map(async (l) => {
          try {
            await l.breaker.execute(async () => {
              const h = await l.backend.health(AbortSignal.timeout(3000));
              if (!h.ok) throw new BackendError(l.backend.id, 'unavailable', `health probe: ${h.detail}`);
            });
          } catch {
            // Still broken (or not yet time for a trial): stays open.
          }
        }),
    );
  }

  /**
   * BACKENDS order, except that boxes of one family are tried least busy first, ties broken at
   * random: several worker processes each see only their own load, and a random pick spreads
   * them over the boxes instead of all choosing the first.
   */
  private ordered(): Link[] {
    const families = [...new Set(this.links.map((l) => l.backend.family))];
    return families.flatMap((f) =>
      this.links
        .filter((l) => l.backend.family === f)
        .map((l) => ({ l, key: l.backend.inFlight + Math.random() * 0.5 }))
        .sort((a, b) => a.key - b.key)
        .map((x) => x.l),
    );
  }

  async run(
    job: BackendJob,
    ctx: RunContext,
    opts: { paidAllowed: boolean; onAttempt?: (backend: ImageBackend) => void },
  ): Promise<ChainSuccess> {
    const attempts: Attempt[] = [];
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
    let supported = 0;
    let skippedForBudget = 0;
    let rejected: BackendError | undefined;
    for (const link of this.ordered()) {
      const { backend } = link;
      const reason = unsupportedReason(backend, job.request);
      if (reason) {
        this.o.log.info({ backend: backend.id, reason }, 'backend skipped: unsupported');
        continue;
      }
      supported++;
      if (backend.capabilities.paid && !opts.paidAllowed) {
        skippedForBudget++;
        attempts.push({ backend: backend.id, outcome: 'skipped', seconds: 0, costUsd: 0, detail: 'budget spent' });
        continue;
      }
      if (ctx.signal.aborted) break;
      const started = performance.now();
      try {
        const output = await link.breaker.execute(() =>
          link.retry.execute(() => {
            opts.onAttempt?.(backend);
            return backend.generate(job, runCtx);
          }),
        );
        const cost = this.o.price(backend, job.request, output.billedSeconds, output.billedImages);
        attempts.push({ backend: backend.id, outcome: 'succeeded', seconds: output.billedSeconds, costUsd: cost });
        return { backend, output, attempts };
      } catch (err) {
        if (err instanceof BrokenCircuitError) {
          attempts.push({ backend: backend.id, outcome: 'skipped', seconds: 0, costUsd: 0, detail: 'circuit open' });
          continue;
        }
        const seconds = (performance.now() - started) / 1000;
        const be = isBackendError(err) ? err : new BackendError(backend.id, 'bad-response', String(err), { cause: err });
        this.o.log.warn({ backend: backend.id, kind: be.kind, status: be.status, err: be }, 'backend attempt failed');
        attempts.push({
          backend: backend.id,
          outcome: be.kind === 'cancelled' ? 'cancelled' : 'failed',
          seconds: Math.round(seconds * 1000) / 1000,
          costUsd: 0,
          errorKind: be.kind,
        });
        if (be.kind === 'cancelled' || ctx.signal.aborted) {
          throw new ChainError('cancelled', attempts, false);
        }
        if (be.kind === 'unsafe') {
          throw new ChainError('unsafe', attempts, false);
        }
        if (be.kind === 'rejected') rejected = be;
      }
    }
    if (ctx.signal.aborted) throw new ChainError('cancelled', attempts, false);
    if (supported === 0) throw new ChainError('unsupported', attempts, false);
    const tried = attempts.filter((a) => a.outcome === 'failed').length;
    if (skippedForBudget > 0 && tried === 0 && attempts.every((a) => a.outcome === 'skipped' && a.detail === 'budget spent')) {
      throw new ChainError('budget_spent', attempts, false);
    }
    if (rejected && attempts.every((a) => a.outcome !== 'failed' || a.errorKind === 'rejected')) {
      throw new ChainError('rejected', attempts, false);
    }
    // Everything down, busy or open-circuited: BullMQ retries later, when circuits may have closed.
    throw new ChainError('all_backends_failed', attempts, true);
  }
}
