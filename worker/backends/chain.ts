import { ConsecutiveBreaker, CircuitState, circuitBreaker, handleWhen, BrokenCircuitError, type CircuitBreakerPolicy } from 'cockatiel';
import { BackendError, isBackendError } from '../../core/errors.js';
import type { Attempt, GenerationRequest } from '../../core/generation.js';
import type { Logger } from '../../core/io/logger.js';
import type { BackendJob, BackendOutput, ImageBackend, RunContext } from './backend.js';

/** Final outcome of a chain that made no image. */
export class ChainError extends Error {
  override readonly name = 'ChainError';
  constructor(
    readonly code: 'all_backends_failed' | 'rejected' | 'unsafe' | 'cancelled' | 'budget_spent' | 'unsupported',
    readonly userMessage: string,
    readonly attempts: Attempt[],
    /** true when trying again later may work (everything was down or busy). */
    readonly retryable: boolean,
  ) {
    super(`${code}: ${userMessage}`);
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
  price: (backend: ImageBackend, billedSeconds: number, billedImages: number) => number;
  /** Consecutive failures that open a backend's circuit. */
  breakerThreshold?: number;
  /** How long an open circuit stays open before one trial request is let through. */
  halfOpenAfterMs?: number;
}

interface Link {
  backend: ImageBackend;
  breaker: CircuitBreakerPolicy;
}

function supports(backend: ImageBackend, r: GenerationRequest): string | null {
  const c = backend.capabilities;
  if (!c.kinds.includes(r.kind)) return `cannot do ${r.kind}`;
  if (r.width * r.height > c.maxPixels) return `cannot make ${r.width}×${r.height}`;
  return null;
}

/**
 * The fallback chain: backends in BACKENDS order, each behind a circuit breaker. A backend whose
 * circuit is open is skipped at once; a failure moves the job to the next backend; content flagged
 * unsafe or a cancel ends the chain (shopping around for a laxer provider would defeat the check).
 */
export class BackendChain {
  private readonly links: Link[];

  constructor(private readonly o: ChainOptions) {
    this.links = o.backends.map((backend) => ({
      backend,
      breaker: circuitBreaker(
        handleWhen((err) => isBackendError(err) && err.retryable),
        {
          halfOpenAfter: o.halfOpenAfterMs ?? 15_000,
          breaker: new ConsecutiveBreaker(o.breakerThreshold ?? 3),
        },
      ),
    }));
  }

  circuitState(backendId: string): 'closed' | 'open' | 'half-open' | 'isolated' | undefined {
    const link = this.links.find((l) => l.backend.id === backendId);
    if (!link) return undefined;
    const s = link.breaker.state;
    return s === CircuitState.Closed ? 'closed' : s === CircuitState.Open ? 'open' : s === CircuitState.HalfOpen ? 'half-open' : 'isolated';
  }

  get backends(): readonly ImageBackend[] {
    return this.o.backends;
  }

  async run(
    job: BackendJob,
    ctx: RunContext,
    opts: { paidAllowed: boolean; onAttempt?: (backend: ImageBackend) => void },
  ): Promise<ChainSuccess> {
    const attempts: Attempt[] = [];
    let sawSupported = false;
    let sawBudgetSkip = false;
    // Least busy first among equivalent boxes keeps several GPU boxes evenly loaded.
    const ordered = [...this.links].sort((a, b) =>
      a.backend.family === b.backend.family ? a.backend.inFlight - b.backend.inFlight : 0,
    );
    for (const { backend, breaker } of ordered) {
      const unsupported = supports(backend, job.request);
      if (unsupported) {
        this.o.log.debug({ backend: backend.id, reason: unsupported }, 'backend skipped');
        continue;
      }
      sawSupported = true;
      if (backend.capabilities.paid && !opts.paidAllowed) {
        sawBudgetSkip = true;
        attempts.push({ backend: backend.id, outcome: 'skipped', seconds: 0, costUsd: 0, detail: 'budget spent' });
        continue;
      }
      const started = performance.now();
      opts.onAttempt?.(backend);
      try {
        const output = await breaker.execute(() => backend.generate(job, ctx));
        const cost = this.o.price(backend, output.billedSeconds, output.billedImages);
        attempts.push({ backend: backend.id, outcome: 'succeeded', seconds: output.billedSeconds, costUsd: cost });
        return { backend, output, attempts };
      } catch (err) {
        const seconds = (performance.now() - started) / 1000;
        if (err instanceof BrokenCircuitError) {
          attempts.push({ backend: backend.id, outcome: 'skipped', seconds: 0, costUsd: 0, detail: 'circuit open' });
          continue;
        }
        const be = isBackendError(err) ? err : new BackendError(backend.id, 'bad-response', String(err), { cause: err });
        this.o.log.warn({ backend: backend.id, kind: be.kind, status: be.status, err: be }, 'backend attempt failed');
        attempts.push({
          backend: backend.id,
          outcome: be.kind === 'cancelled' ? 'cancelled' : 'failed',
          seconds,
          costUsd: 0,
          errorKind: be.kind,
        });
        if (be.kind === 'cancelled') throw new ChainError('cancelled', 'the job was cancelled.', attempts, false);
        if (be.kind === 'unsafe') throw new ChainError('unsafe', 'the image backend flagged the result as unsafe.', attempts, false);
      }
    }
    if (!sawSupported) throw new ChainError('unsupported', 'no configured backend can do this kind of job.', attempts, false);
    if (sawBudgetSkip && attempts.every((a) => a.outcome !== 'failed' || a.errorKind === undefined)) {
      const onlyBudget = attempts.every((a) => a.detail === 'budget spent' || a.outcome === 'skipped');
      if (onlyBudget) {
        throw new ChainError('budget_spent', "this server's monthly budget for paid providers is spent and no free backend is available.", attempts, false);
      }
    }
    throw new ChainError('all_backends_failed', 'every image backend is down or busy right now. Please try again later.', attempts, true);
  }
}
