import { AsyncLocalStorage } from 'node:async_hooks';
import { BackendError, isBackendError, isUserError } from '../../core/errors.js';
import { OUTPUT_LIMITS } from '../../core/image-limits.js';
import { fetchAttachment, readCappedBody, readImageBody } from '../../core/io/attachments.js';
import { detectFormat } from '../../core/io/image-sniff.js';
import type { BackendErrors } from './backend.js';

/** Hugging Face's own origins, which provider routing talks to: the Hub (model mappings) and the router (inference, queue polls). */
export const HF_API_ORIGINS: readonly string[] = ['https://huggingface.co', 'https://router.huggingface.co'];

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 3;
const NULL_BODY_STATUSES = new Set([101, 204, 205, 304]);
/** An error answer's body is only its message: one longer than this is dropped, its status kept. */
const ERROR_BODY_MAX = 64 * 1024;

const scope = new AsyncLocalStorage<typeof fetch>();
/** The fetch that reaches the network, whatever the scope. */
const direct: typeof fetch = globalThis.fetch;
let wrapped = false;

/**
 * Runs `run` with every global fetch of its async context going to `impl`. @huggingface/inference
 * 4.x takes a custom `fetch` for its API requests only: a provider's output URL, and a queued
 * request's polls, it fetches with the global one. So the global fetch is wrapped, once, to defer
 * to the fetch of the context it is called from, and to the original everywhere else.
 */
export function withFetch<T>(impl: typeof fetch, run: () => Promise<T>): Promise<T> {
  if (!wrapped) {
    wrapped = true;
    const global = globalThis.fetch;
    globalThis.fetch = ((input, init) => (scope.getStore() ?? global)(input, init)) as typeof fetch;
  }
  return scope.run(impl, run);
}

export interface HfFetchPolicy {
  /** The backend's id, for its errors. */
  id: string;
  errors: BackendErrors;
  /** Origins API requests may go to: the dedicated endpoint's, or {@link HF_API_ORIGINS}. */
  apiOrigins: readonly string[];
  /** Origins an output file the answer names by URL may come from (HF_OUTPUT_ORIGINS). */
  outputOrigins: readonly string[];
  /** Byte cap on an image, in an answer or at a URL. */
  maxBytes: number;
  /** Deadline of one output download (the request's own signal usually fires first). */
  downloadTimeoutMs: number;
  /** Sees each API answer before its body is read (its Retry-After). */
  onAnswer?: (res: Response) => void;
}

function originsOf(list: readonly string[]): Set<string> {
  return new Set(list.map((o) => new URL(o).origin));
}

/** The answer's headers for a body we rebuilt: its length and encoding no longer apply. */
function rebuiltHeaders(res: Response, contentType?: string | null): Headers {
  const headers = new Headers(res.headers);
  headers.delete('content-length');
  headers.delete('content-encoding');
  if (contentType === null) headers.delete('content-type');
  else if (contentType !== undefined) headers.set('content-type', contentType);
  return headers;
}

/**
 * The fetch the Hugging Face client gets, provider output being hostile input:
 * - API requests go only to `apiOrigins`, redirects followed by hand within them; each answer's
 *   body is read under a byte cap as it streams (an image under `maxBytes` and by its magic bytes,
 *   whatever type it claims; JSON under room for one image in base64; an error's message under 64 KB);
 * - any other URL is an output file: fetched like an upload (core/io/attachments.ts) only from
 *   `outputOrigins` (redirects re-checked), under the byte cap, and refused by its header over the
 *   pixel cap; a URL elsewhere is refused without being contacted;
 * - `data:` URLs are the client decoding a base64 image from an answer already read under the cap.
 * A refusal is a bad response.
 */
export function hfFetch(p: HfFetchPolicy): typeof fetch {
  const api = originsOf(p.apiOrigins);
  const output = originsOf(p.outputOrigins);
  const jsonMax = Math.ceil((p.maxBytes * 4) / 3) + 64 * 1024;
  const refused = (err: unknown, what: string): unknown =>
    isUserError(err) ? p.errors.badResponse(`${what} refused: ${err.userMessage}`, err) : err;

  async function capped(res: Response): Promise<Response> {
    const init = { status: res.status, statusText: res.statusText };
    if (NULL_BODY_STATUSES.has(res.status)) return new Response(null, { ...init, headers: rebuiltHeaders(res) });
    if (!res.ok) {
      const body = await readCappedBody(res, ERROR_BODY_MAX).catch((err: unknown) => {
        if (isUserError(err)) return null;
        throw err;
      });
      return new Response(body && new Uint8Array(body), { ...init, headers: rebuiltHeaders(res, body ? undefined : null) });
    }
    try {
      if (res.headers.get('content-type')?.startsWith('application/json')) {
        return new Response(new Uint8Array(await readCappedBody(res, jsonMax)), { ...init, headers: rebuiltHeaders(res) });
      }
      const bytes = await readImageBody(res, p.maxBytes);
      const format = detectFormat(bytes);
      return new Response(new Uint8Array(bytes), {
        ...init,
        headers: rebuiltHeaders(res, format ? `image/${format}` : 'application/octet-stream'),
      });
    } catch (err) {
      throw refused(err, 'answer');
    }
  }

  async function apiRequest(first: URL, init: RequestInit | undefined): Promise<Response> {
    let url = first;
    for (let redirects = 0; ; redirects++) {
      const res = await direct(url, { ...init, redirect: 'manual' });
      if (!REDIRECT_STATUSES.has(res.status)) {
        p.onAnswer?.(res);
        return capped(res);
      }
      res.body?.cancel().catch(() => undefined);
      let next: URL | undefined;
      try {
        next = new URL(res.headers.get('location') ?? '', url);
      } catch {
        next = undefined;
      }
      if (!next || !api.has(next.origin) || redirects >= MAX_REDIRECTS)
        throw p.errors.badResponse('answer refused: it redirects to another site, which is not followed');
      url = next;
    }
  }

  async function download(url: URL, init: RequestInit | undefined): Promise<Response> {
    // Checked here too for a message that names the setting; fetchAttachment checks it (and each redirect) again.
    if (!output.has(url.origin)) throw p.errors.badResponse('output refused: its URL is not on an allowed origin (HF_OUTPUT_ORIGINS)');
    const caller = init?.signal ?? undefined;
    try {
      const file = await fetchAttachment(url.href, {
        allowedOrigins: p.outputOrigins,
        maxBytes: p.maxBytes,
        maxPixels: OUTPUT_LIMITS.maxPixels,
        formats: OUTPUT_LIMITS.formats,
        timeoutMs: p.downloadTimeoutMs,
        fetchImpl: (u, i) => direct(u, { ...i, signal: caller && i?.signal ? AbortSignal.any([i.signal, caller]) : (i?.signal ?? caller) }),
        httpError: (status) =>
          new BackendError(p.id, status >= 500 ? 'unavailable' : 'bad-response', `output download failed with HTTP ${status}`, {
            status,
            retryable: status >= 500,
          }),
      });
      return new Response(new Uint8Array(file.bytes), { headers: { 'content-type': `image/${file.format}` } });
    } catch (err) {
      // Cancelled or timed out: the caller's signal tells which.
      if (caller?.aborted || isBackendError(err)) throw err;
      throw refused(err, 'output');
    }
  }

  return (input, init) => {
    const href = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    let url: URL;
    try {
      url = new URL(href);
    } catch (err) {
      return Promise.reject(p.errors.badResponse('output refused: the answer names no valid URL', err));
    }
    if (url.protocol === 'data:') return direct(input, init);
    return api.has(url.origin) ? apiRequest(url, init) : download(url, init);
  };
}
