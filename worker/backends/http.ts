import { BackendError } from '../../core/errors.js';

/** Network error codes that mean "the box is not there right now". */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'UND_ERR_SOCKET', 'EAI_AGAIN']);

function causeCode(err: unknown): string | undefined {
  let e: unknown = err;
  for (let i = 0; i < 4 && e; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * Maps a thrown fetch error to a BackendError: our own abort → cancelled, a timeout → timeout,
 * anything on the wire (refused, reset, DNS) → unavailable. All but cancel are retryable.
 */
export function mapFetchError(backend: string, err: unknown, signal?: AbortSignal): BackendError {
  if (err instanceof BackendError) return err;
  if (signal?.aborted) return new BackendError(backend, 'cancelled', 'cancelled', { cause: err, retryable: false });
  const name = (err as { name?: string }).name;
  if (name === 'TimeoutError') return new BackendError(backend, 'timeout', 'request timed out', { cause: err });
  const code = causeCode(err);
  const detail = code && UNREACHABLE.has(code) ? `unreachable (${code})` : `request failed (${code ?? name ?? 'error'})`;
  return new BackendError(backend, 'unavailable', detail, { cause: err });
}

/** Maps a non-2xx HTTP status to a BackendError; 401/403 name the credential variable to check. */
export function mapHttpStatus(backend: string, status: number, body: string, credentialHint?: string): BackendError {
  const snippet = body.slice(0, 200);
  if (status === 401 || status === 403) {
    return new BackendError(backend, 'rejected', `HTTP ${status}: credentials refused${credentialHint ? `; check ${credentialHint}` : ''}`, {
      status,
      retryable: false,
    });
  }
  if (status === 429) return new BackendError(backend, 'busy', `HTTP 429: ${snippet}`, { status });
  if (status >= 500) return new BackendError(backend, 'unavailable', `HTTP ${status}: ${snippet}`, { status });
  return new BackendError(backend, 'rejected', `HTTP ${status}: ${snippet}`, { status, retryable: false });
}

/** A signal that fires on the caller's abort or after `ms`, whichever is first. */
export function withTimeout(ms: number, signal?: AbortSignal): AbortSignal {
  const t = AbortSignal.timeout(ms);
  return signal ? AbortSignal.any([signal, t]) : t;
}

/** A FIFO lock so a GPU box runs one job at a time; waiting can be abandoned through a signal. */
export class BoxLock {
  private tail: Promise<void> = Promise.resolve();
  private waiting = 0;
  private running = 0;

  get inFlight(): number {
    return this.waiting + this.running;
  }

  async run<T>(signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
    let release!: () => void;
    const prev = this.tail;
    this.tail = new Promise<void>((r) => (release = r));
    this.waiting++;
    try {
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => reject(signal.reason ?? new Error('aborted'));
        if (signal.aborted) return onAbort();
        signal.addEventListener('abort', onAbort, { once: true });
        void prev.then(() => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        });
      });
    } catch (err) {
      this.waiting--;
      // Hand our turn on once the job before us is done, so the queue behind us keeps moving.
      void prev.then(release);
      throw err;
    }
    this.waiting--;
    this.running++;
    try {
      return await fn();
    } finally {
      this.running--;
      release();
    }
  }
}
