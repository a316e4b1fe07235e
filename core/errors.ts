/**
 * Expected failures carry a stable `code` and a message that is safe to show a member.
 * Everything else is unexpected: logged with its stack, shown as a generic line with a reference.
 */
export type UserErrorCode =
  | 'invalid_option'
  | 'prompt_too_long'
  | 'quota_exhausted'
  | 'user_blocked'
  | 'queue_unavailable'
  | 'database_unavailable'
  | 'bot_busy'
  | 'prompt_blocked'
  | 'not_in_guild'
  | 'not_moderator'
  | 'job_not_found'
  | 'job_forgotten'
  | 'not_owner'
  | 'stale_button'
  | 'action_unavailable'
  | 'attachment_rejected'
  | 'too_many_queued'
  | 'generation_failed';

export class UserError extends Error {
  override readonly name = 'UserError';
  constructor(
    readonly code: UserErrorCode,
    readonly userMessage: string,
    options?: { cause?: unknown },
  ) {
    super(`${code}: ${userMessage}`, options);
  }
}

export function isUserError(err: unknown): err is UserError {
  return err instanceof UserError;
}

/** Why a backend attempt failed; the chain and the member's message branch on these, never on text. */
export type BackendErrorKind = 'unavailable' | 'timeout' | 'rejected' | 'bad-response' | 'unsafe' | 'cancelled' | 'busy';

/** What a provider bills for an attempt that made no usable image: run time, images, and the per-image price if it bills so. */
export interface BilledUsage {
  seconds: number;
  images: number;
  usdPerImage?: number;
}

export class BackendError extends Error {
  override readonly name = 'BackendError';
  readonly backend: string;
  readonly kind: BackendErrorKind;
  readonly status: number | undefined;
  /** true when the same request may succeed later or elsewhere (refused, 5xx, 429, timeout). */
  readonly retryable: boolean;
  /** Seconds the provider asked us to wait (429 Retry-After), when it said. */
  readonly retryAfterS: number | undefined;
  /**
   * The backend is taken for broken by this one failure (a GPU box that stopped answering, or that
   * stopped moving): its circuit opens at once, for every worker, until a health probe finds it well.
   */
  readonly opensCircuit: boolean;
  /** What the provider bills for the failed or cancelled attempt (Replicate bills run time either way). */
  readonly billed: BilledUsage | undefined;
  /**
   * A retry of the same job on this backend picks up where this attempt stopped (it keeps what it
   * made and bills only what is missing), so a billed failure may still be retried there.
   */
  readonly resumable: boolean;
  constructor(
    backend: string,
    kind: BackendErrorKind,
    message: string,
    opts: {
      status?: number;
      retryable?: boolean;
      retryAfterS?: number;
      cause?: unknown;
      opensCircuit?: boolean;
      billed?: BilledUsage;
      resumable?: boolean;
    } = {},
  ) {
    super(`${backend}: ${message}`, { cause: opts.cause });
    this.backend = backend;
    this.kind = kind;
    this.status = opts.status;
    this.retryable = opts.retryable ?? (kind === 'unavailable' || kind === 'timeout' || kind === 'busy');
    this.retryAfterS = opts.retryAfterS;
    this.opensCircuit = opts.opensCircuit ?? false;
    this.billed = opts.billed;
    this.resumable = opts.resumable ?? false;
  }
}

export function isBackendError(err: unknown): err is BackendError {
  return err instanceof BackendError;
}
