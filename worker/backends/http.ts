import { Pool } from 'undici';
import type { z } from 'zod';
import { BackendError } from '../../core/errors.js';

/** Network error codes that mean "the remote is not there right now". */
const UNREACHABLE_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_CLOSED',
]);

/** The first `code` string along an error's `cause` chain (undici nests the socket error). */
function errorCode(err: unknown): string | undefined {
  let e: unknown = err;
  for (let i = 0; i < 5 && e; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/** `Authorization` value for HTTP Basic from `user:pass`. */
export function basicAuthHeader(userPass: string): string {
  return `Basic ${Buffer.from(userPass, 'utf8').toString('base64')}`;
}

/** Seconds from a `Retry-After` header (delta-seconds or HTTP date), if it says anything usable. */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const s = Number(value.trim());
  if (Number.isFinite(s) && s >= 0) return s;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - now) / 1000));
}

export interface FetchErrorContext {
  /** The caller's signal: aborted means cancelled, unless its reason is already a BackendError. */
  signal?: AbortSignal;
  /** The request's own timeout signal, to tell a timeout from a network failure. */
  timeout?: AbortSignal;
  timeoutMs?: number;
  /** What was being done, e.g. `POST /sdapi/v1/txt2img`, for the message. */
  what?: string;
}

/**
 * Maps a thrown fetch error to a BackendError. An abort whose reason is a BackendError is passed
 * through (the caller decided what it means); any other caller abort is 'cancelled'; our timeout
 * is 'timeout'; anything on the wire (refused, reset, DNS) is 'unavailable'.
 */
export function mapFetchError(backend: string, err: unknown, ctx: FetchErrorContext = {}): BackendError {
  if (err instanceof BackendError) return err;
  const prefix = ctx.what ? `${ctx.what}: ` : '';
  if (ctx.signal?.aborted) {
    const reason: unknown = ctx.signal.reason;
    if (reason instanceof BackendError) return reason;
    return new BackendError(backend, 'cancelled', `${prefix}cancelled`, { cause: err, retryable: false });
  }
  if (ctx.timeout?.aborted || (err as { name?: string } | null)?.name === 'TimeoutError') {
    const after = ctx.timeoutMs === undefined ? '' : ` after ${ctx.timeoutMs} ms`;
    return new BackendError(backend, 'timeout', `${prefix}no answer${after}`, { cause: err });
  }
  const code = errorCode(err);
  const detail =
    code && UNREACHABLE_CODES.has(code) ? `unreachable (${code})` : `request failed (${code ?? (err as Error)?.message ?? String(err)})`;
  return new BackendError(backend, 'unavailable', `${prefix}${detail}`, { cause: err });
}

export interface HttpStatusContext {
  /** Setting to name when credentials are refused, e.g. `A1111_AUTH`. */
  credentialHint?: string;
  /** The response's `Retry-After` header. */
  retryAfter?: string | null;
  what?: string;
}

/**
 * Maps a non-2xx status: 401/403 → rejected (naming the credential setting), 429 → busy with
 * Retry-After, 5xx → unavailable, other 4xx → rejected. Only the first 200 body characters are kept.
 */
export function mapHttpStatus(backend: string, status: number, body: string, ctx: HttpStatusContext = {}): BackendError {
  const prefix = ctx.what ? `${ctx.what}: ` : '';
  const snippet = body.replace(/\s+/g, ' ').trim().slice(0, 200);
  if (status === 401 || status === 403) {
    const hint = ctx.credentialHint ? `the credentials in ${ctx.credentialHint} are wrong or missing` : 'credentials refused';
    return new BackendError(backend, 'rejected', `${prefix}HTTP ${status}: ${hint}`, { status, retryable: false });
  }
  if (status === 429) {
    return new BackendError(backend, 'busy', `${prefix}HTTP 429: ${snippet}`, { status, retryAfterS: parseRetryAfter(ctx.retryAfter) });
  }
  if (status >= 500) return new BackendError(backend, 'unavailable', `${prefix}HTTP ${status}: ${snippet}`, { status });
  return new BackendError(backend, 'rejected', `${prefix}HTTP ${status}: ${snippet}`, { status, retryable: false });
}

export interface JsonRequest {
  method?: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** Serialised as JSON; its presence makes the default method POST. */
  body?: unknown;
  /** Caller's signal; see {@link mapFetchError} for how its reason is treated. */
  signal?: AbortSignal;
  timeoutMs?: number;
}

/** A small JSON-over-HTTP client bound to one base URL, whose every failure is a BackendError. */
export interface JsonClient {
  /** Response body parsed as JSON, not validated. */
  raw(path: string, req?: JsonRequest): Promise<unknown>;
  /** Response body parsed as JSON and validated; a mismatch is 'bad-response'. */
  json<T>(path: string, schema: z.ZodType<T>, req?: JsonRequest): Promise<T>;
}

export interface JsonClientOptions {
  backend: string;
  baseUrl: string;
  /** Sent on every request (e.g. Authorization); never logged or put in messages. */
  headers?: Record<string, string>;
  credentialHint?: string;
}

/** Short description of the first zod issue, for 'bad-response' messages. */
export function describeZodError(err: z.ZodError): string {
  const issue = err.issues[0];
  if (!issue) return 'unexpected shape';
  return `${issue.path.length ? issue.path.join('.') : '(root)'}: ${issue.message}`;
}

/** The reason a request's own timeout aborts it with; mapFetchError tells it from a network failure by name. */
function timeoutReason(ms: number): DOMException {
  return new DOMException(`no answer after ${ms} ms`, 'TimeoutError');
}

/** A signal that is aborted already, standing for "our timeout fired" in {@link mapFetchError}'s context. */
const TIMED_OUT = AbortSignal.abort();

/**
 * Builds a {@link JsonClient}. Backends that speak JSON over plain HTTP (A1111, ComfyUI, dedicated
 * endpoints) share its error mapping so the chain sees the same kinds everywhere.
 *
 * Requests go through a keep-alive undici Pool of the base URL's own, not global fetch: a job sends
 * its box a request or two every poll, and fetch's WHATWG layer (web streams, a Request and a
 * Response per call, AbortSignal.any) cost more CPU than the request itself. undici's own header
 * and body timers are off: the caller's `timeoutMs` is the one cap, as it was with fetch.
 */
export function createJsonClient(o: JsonClientOptions): JsonClient {
  const url = new URL(o.baseUrl);
  const basePath = url.pathname.replace(/\/+$/, '');
  const pool = new Pool(url.origin, { headersTimeout: 0, bodyTimeout: 0 });
  async function raw(path: string, req: JsonRequest = {}): Promise<unknown> {
    const method = req.method ?? (req.body === undefined ? 'GET' : 'POST');
    const what = `${method} ${path.split('?')[0]}`;
    const headers: Record<string, string> = { accept: 'application/json', ...o.headers };
    if (req.body !== undefined) headers['content-type'] = 'application/json';
    // One signal for the caller's abort and our timeout: the caller's reason is passed on as is.
    let timedOut = false;
    let signal = req.signal;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    if (req.timeoutMs !== undefined) {
      const ms = req.timeoutMs;
      const both = new AbortController();
      signal = both.signal;
      timer = setTimeout(() => {
        timedOut = true;
        both.abort(timeoutReason(ms));
      }, ms);
      const caller = req.signal;
      if (caller?.aborted) both.abort(caller.reason);
      else if (caller) {
        onAbort = () => both.abort(caller.reason);
        caller.addEventListener('abort', onAbort, { once: true });
      }
    }
    let status: number;
    let text: string;
    let retryAfter: string | null;
    try {
      const res = await pool.request({
        path: `${basePath}${path}`,
        method,
        headers,
        body: req.body === undefined ? null : JSON.stringify(req.body),
        signal: signal ?? null,
      });
      status = res.statusCode;
      const ra = res.headers['retry-after'];
      retryAfter = (Array.isArray(ra) ? ra[0] : ra) ?? null;
      // Read the whole body inside the try: a reset mid-body is a network failure too.
      text = await res.body.text();
    } catch (err) {
      throw mapFetchError(o.backend, err, {
        signal: req.signal,
        timeout: timedOut ? TIMED_OUT : undefined,
        timeoutMs: req.timeoutMs,
        what,
      });
    } finally {
      clearTimeout(timer);
      if (onAbort) req.signal?.removeEventListener('abort', onAbort);
    }
    if (status < 200 || status > 299) throw mapHttpStatus(o.backend, status, text, { credentialHint: o.credentialHint, retryAfter, what });
    try {
      return JSON.parse(text) as unknown;
    } catch (err) {
      throw new BackendError(o.backend, 'bad-response', `${what}: HTTP ${status} with a body that is not JSON`, {
        status,
        retryable: true,
        cause: err,
      });
    }
  }
  return {
    raw,
    async json<T>(path: string, schema: z.ZodType<T>, req?: JsonRequest): Promise<T> {
      const body = await raw(path, req);
      const parsed = schema.safeParse(body);
      if (!parsed.success) {
        throw new BackendError(
          o.backend,
          'bad-response',
          `${path.split('?')[0]}: unexpected response (${describeZodError(parsed.error)})`,
          {
            retryable: true,
            cause: parsed.error,
          },
        );
      }
      return parsed.data;
    },
  };
}

/** Thrown by {@link FifoLock.acquire} when the caller gives up while waiting. */
class LockWaitAborted extends Error {
  override readonly name = 'LockWaitAborted';
}

/**
 * A first-come-first-served mutex, so one GPU box runs one of our jobs at a time. A waiter whose
 * signal aborts leaves the queue without ever holding the lock.
 */
export class FifoLock {
  private held = false;
  private readonly waiters: Array<() => void> = [];

  /** Holder plus waiters. */
  get inFlight(): number {
    return (this.held ? 1 : 0) + this.waiters.length;
  }

  /** Resolves with a release function once it is our turn; rejects with LockWaitAborted on abort. */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(new LockWaitAborted('aborted before acquiring'));
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      const next = this.waiters.shift();
      if (next) next();
      else this.held = false;
    };
    if (!this.held) {
      this.held = true;
      return Promise.resolve(release);
    }
    return new Promise((resolve, reject) => {
      const grant = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve(release);
      };
      const onAbort = () => {
        const i = this.waiters.indexOf(grant);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new LockWaitAborted('aborted while waiting'));
      };
      this.waiters.push(grant);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Runs `fn` while holding the lock. */
  async run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const release = await this.acquire(signal);
    try {
      return await fn();
    } finally {
      release();
    }
  }
}
