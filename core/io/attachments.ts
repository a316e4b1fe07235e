import { UserError } from '../errors.js';
import { ATTACHMENT_LIMITS } from '../image-limits.js';
import { detectFormat, type ImageFormat, sniffImage } from './image-sniff.js';

export { sniffImage } from './image-sniff.js';

/** Defaults for {@link fetchAttachment}; the limits members are told about. */
const ATTACHMENT_DEFAULTS = {
  ...ATTACHMENT_LIMITS,
  timeoutMs: 15_000,
} as const;

/** Redirects followed at most; each target is re-checked against the allowed origins. */
const MAX_REDIRECTS = 3;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const MB = 1024 * 1024;
const notAnImage = 'The attachment is not an image. Upload a PNG, JPEG, WebP or GIF.';

export interface FetchAttachmentOptions {
  /** Exact origins (scheme, host, port) attachments may come from, e.g. `https://cdn.discordapp.com`. */
  allowedOrigins: readonly string[];
  /** Byte cap on the body; default 10 MB. */
  maxBytes?: number;
  /** Cap on width × height as declared by the header; default 16,000,000. */
  maxPixels?: number;
  /** Overall deadline for every request and the body together; default 15 s. */
  timeoutMs?: number;
  /** Formats accepted (default PNG, JPEG, WebP and GIF); anything else is refused from its magic bytes. */
  formats?: readonly ImageFormat[];
  /** The error for a non-2xx answer (default a refusal saying the HTTP status). */
  httpError?: (status: number) => Error;
  fetchImpl?: typeof fetch;
}

/** An attachment that passed every check: its bytes and what its header declares. */
export interface FetchedImage {
  bytes: Buffer;
  format: ImageFormat;
  width: number;
  height: number;
}

function reject(userMessage: string, cause?: unknown): UserError {
  return new UserError('attachment_rejected', userMessage, cause === undefined ? undefined : { cause });
}

/** "30.0 MB" for a measured size; `trim` gives "10 MB" for a configured limit. */
function formatSize(bytes: number, trim = false): string {
  const [value, unit] = bytes >= MB ? [bytes / MB, 'MB'] : bytes >= 1024 ? [bytes / 1024, 'KB'] : [bytes, 'bytes'];
  if (unit === 'bytes') return `${value} bytes`;
  return `${trim ? Number(value.toFixed(1)) : value.toFixed(1)} ${unit}`;
}

/** Parses `raw` (relative to `base` for redirects) and refuses anything but an allowed origin. */
function checkUrl(raw: string, allowed: ReadonlySet<string>, base?: URL): URL {
  let url: URL;
  try {
    url = base ? new URL(raw, base) : new URL(raw);
  } catch {
    throw reject(base ? 'The attachment link redirects to an invalid address.' : 'The attachment link is not valid.');
  }
  if (url.username !== '' || url.password !== '') {
    throw reject('The attachment link must not contain a user name or password.');
  }
  // Non-http(s) URLs have the opaque origin "null", which is never in the allowed set.
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || !allowed.has(url.origin)) {
    throw reject(
      base
        ? 'The attachment link redirects to another site, which is not allowed. Upload the image to Discord directly.'
        : 'Attachments are only accepted from Discord. Upload the image to Discord directly.',
    );
  }
  return url;
}

function normaliseOrigins(origins: readonly string[]): Set<string> {
  const set = new Set<string>();
  for (const o of origins) {
    try {
      const origin = new URL(o).origin;
      if (origin !== 'null') set.add(origin);
    } catch {
      // A malformed configured origin simply allows nothing.
    }
  }
  return set;
}

function discard(res: Response): void {
  res.body?.cancel().catch(() => undefined);
}

/**
 * A response body read under a byte cap (Content-Length first, then the bytes actually received),
 * refused as soon as its first bytes are no image we accept. For image bodies fetched by other
 * means (a provider's client, a box's API); refusals are UserErrors `attachment_rejected`.
 */
export function readImageBody(res: Response, maxBytes: number): Promise<Buffer> {
  return readCapped(res, maxBytes);
}

/** Any response body (JSON, an error's text) read under a byte cap, with the same refusals as {@link readImageBody} but no format check. */
export function readCappedBody(res: Response, maxBytes: number): Promise<Buffer> {
  return readCapped(res, maxBytes, false);
}

async function readCapped(res: Response, maxBytes: number, image = true): Promise<Buffer> {
  const noun = image ? 'image' : 'answer';
  const declared = res.headers.get('content-length');
  if (declared !== null && /^\d+$/.test(declared.trim()) && Number(declared) > maxBytes) {
    discard(res);
    throw reject(`The ${noun} is ${formatSize(Number(declared))}; the limit is ${formatSize(maxBytes, true)}.`);
  }
  if (!res.body) return Buffer.alloc(0);
  const reader = res.body.getReader();
  const chunks: Buffer[] = [];
  let total = 0;
  let magicChecked = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      // Content-Length may lie or be absent: the count of bytes actually received is what is capped.
      if (total > maxBytes) throw reject(`The ${noun} is larger than the ${formatSize(maxBytes, true)} limit.`);
      chunks.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
      if (image && !magicChecked && total >= 12) {
        magicChecked = true;
        if (!detectFormat(Buffer.concat(chunks))) throw reject(notAnImage);
      }
    }
  } catch (err) {
    reader.cancel().catch(() => undefined);
    throw err;
  }
  return Buffer.concat(chunks, total);
}

/** What Discord says of an attachment before anything is downloaded. */
export interface DeclaredAttachment {
  url: string;
  /** Bytes, as Discord measured them. */
  size: number;
  width?: number | null;
  height?: number | null;
}

/**
 * Refuses, from what Discord declares and without contacting anything, an attachment that the
 * download would refuse anyway: a foreign origin, more bytes or pixels than allowed. Lets a bad
 * upload be refused privately before a job is admitted; the download still checks it all again.
 */
export function precheckAttachment(
  a: DeclaredAttachment,
  opts: Pick<FetchAttachmentOptions, 'allowedOrigins' | 'maxBytes' | 'maxPixels'>,
): void {
  checkUrl(a.url, normaliseOrigins(opts.allowedOrigins));
  const maxBytes = opts.maxBytes ?? ATTACHMENT_DEFAULTS.maxBytes;
  if (a.size > maxBytes) throw reject(`The image is ${formatSize(a.size)}; the limit is ${formatSize(maxBytes, true)}.`);
  const maxPixels = opts.maxPixels ?? ATTACHMENT_DEFAULTS.maxPixels;
  if (a.width && a.height && a.width * a.height > maxPixels) {
    throw reject(
      `The image is ${a.width}×${a.height} (${((a.width * a.height) / 1e6).toFixed(1)} megapixels); ` +
        `the limit is ${Number((maxPixels / 1e6).toFixed(1))} megapixels.`,
    );
  }
}

/**
 * Downloads an attachment as hostile input and returns it only when it is a PNG, JPEG, WebP or GIF
 * within the byte and pixel limits. Every refusal is a UserError `attachment_rejected` whose message
 * can be shown to the member.
 *
 * - The URL, and every redirect target (at most 3, followed by hand), must be on an allowed origin
 *   and carry no credentials; a foreign origin is never contacted.
 * - The body is streamed under a byte cap and the whole exchange under one deadline.
 * - The format comes from magic bytes and the size from the header, checked against `maxPixels`
 *   before anything decodes the image (decompression bombs).
 */
export async function fetchAttachment(url: string, opts: FetchAttachmentOptions): Promise<FetchedImage> {
  const allowed = normaliseOrigins(opts.allowedOrigins);
  const maxBytes = opts.maxBytes ?? ATTACHMENT_DEFAULTS.maxBytes;
  const maxPixels = opts.maxPixels ?? ATTACHMENT_DEFAULTS.maxPixels;
  const timeoutMs = opts.timeoutMs ?? ATTACHMENT_DEFAULTS.timeoutMs;
  const fetchImpl = opts.fetchImpl ?? globalThis.fetch;

  let target = checkUrl(url, allowed);
  const signal = AbortSignal.timeout(timeoutMs);
  const timedOut = (): UserError =>
    reject(`Downloading the attachment took longer than ${Math.ceil(timeoutMs / 1000)} s. Try again later.`);

  // The caller's own error for an HTTP status goes out as it is.
  const passThrough = new WeakSet<object>();
  let bytes: Buffer;
  try {
    for (let redirects = 0; ; redirects += 1) {
      let res: Response;
      try {
        res = await fetchImpl(target, { redirect: 'manual', signal, headers: { accept: 'image/*' } });
      } catch (err) {
        throw signal.aborted ? timedOut() : reject('The attachment could not be downloaded. Try again later.', err);
      }
      if (REDIRECT_STATUSES.has(res.status)) {
        discard(res);
        if (redirects >= MAX_REDIRECTS) throw reject('The attachment link redirects too many times.');
        const location = res.headers.get('location');
        if (!location) throw reject(`The attachment could not be downloaded (HTTP ${res.status} without a target).`);
        target = checkUrl(location, allowed, target);
        continue;
      }
      if (res.status < 200 || res.status > 299) {
        discard(res);
        if (opts.httpError) {
          const e = opts.httpError(res.status);
          passThrough.add(e);
          throw e;
        }
        throw reject(`The attachment could not be downloaded (HTTP ${res.status}). Upload it again.`);
      }
      bytes = await readCapped(res, maxBytes);
      break;
    }
  } catch (err) {
    if (err instanceof UserError || passThrough.has(err as object)) throw err;
    throw signal.aborted ? timedOut() : reject('The attachment could not be downloaded. Try again later.', err);
  }

  const header = sniffImage(bytes);
  if (!header) {
    throw reject(detectFormat(bytes) ? 'The image file is damaged or incomplete. Upload it again.' : notAnImage);
  }
  if (opts.formats && !opts.formats.includes(header.format)) {
    throw reject(
      `The image is a ${header.format.toUpperCase()}; only ${opts.formats.map((f) => f.toUpperCase()).join(', ')} are accepted.`,
    );
  }
  const pixels = header.width * header.height;
  if (pixels > maxPixels) {
    throw reject(
      `The image is ${header.width}×${header.height} (${(pixels / 1e6).toFixed(1)} megapixels); ` +
        `the limit is ${Number((maxPixels / 1e6).toFixed(1))} megapixels.`,
    );
  }
  return { bytes, ...header };
}
