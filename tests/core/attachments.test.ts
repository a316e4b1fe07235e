import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import { afterAll, beforeAll, beforeEach, expect, test } from 'vitest';
import { isUserError } from '../../core/errors.js';
import { fetchAttachment, sniffImage } from '../../core/io/attachments.js';
import { bombPng, PNG_SIGNATURE } from '../fixtures/png.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

/** A local origin whose routes tests set, recording every request path it receives. */
interface Origin {
  origin: string;
  url(path: string): string;
  routes: Map<string, Handler>;
  requests: string[];
  server: Server;
}

async function startOrigin(): Promise<Origin> {
  const routes = new Map<string, Handler>();
  const requests: string[] = [];
  const server = createServer((req, res) => {
    requests.push(req.url ?? '');
    const handler = routes.get(req.url ?? '');
    if (handler) void handler(req, res);
    else res.writeHead(404).end('not found');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { origin, url: (p) => origin + p, routes, requests, server };
}

const MB = 1024 * 1024;
const PNG_SIG = PNG_SIGNATURE;
let allowed: Origin;
let foreign: Origin;
const fixtures: Record<'png' | 'jpeg' | 'webp', Buffer> = {} as never;

function sendBytes(bytes: Buffer, contentType = 'image/png'): Handler {
  return (_req, res) => {
    res.writeHead(200, { 'content-type': contentType, 'content-length': String(bytes.length) });
    res.end(bytes);
  };
}

function sendChunked(bytes: Buffer): Handler {
  return (_req, res) => {
    res.writeHead(200, { 'content-type': 'image/png' });
    res.write(bytes.subarray(0, 100));
    res.end(bytes.subarray(100));
  };
}

function redirectTo(location: string, status = 302): Handler {
  return (_req, res) => {
    res.writeHead(status, { location }).end();
  };
}

/** Streams `total` bytes that start like a PNG; records how much was written and whether the client hung up. */
function streamHuge(total: number, contentLength: boolean) {
  const state = { sent: 0, closedEarly: false, closed: undefined as Promise<void> | undefined };
  const handler: Handler = async (_req, res) => {
    state.closed = new Promise((resolve) => res.on('close', () => resolve()));
    res.on('close', () => (state.closedEarly = !res.writableFinished));
    res.writeHead(200, { 'content-type': 'image/png', ...(contentLength ? { 'content-length': String(total) } : {}) });
    const chunk = Buffer.alloc(64 * 1024);
    PNG_SIG.copy(chunk);
    while (state.sent < total && !res.destroyed) {
      const ok = res.write(chunk);
      state.sent += chunk.length;
      if (!ok) {
        await new Promise<void>((resolve) => {
          const done = (): void => {
            res.off('drain', done).off('close', done);
            resolve();
          };
          res.on('drain', done).on('close', done);
        });
      }
    }
    if (!res.destroyed) res.end();
  };
  return { state, handler };
}

async function refusal(p: Promise<unknown>): Promise<string> {
  const err: unknown = await p.then(
    () => new Error('expected a refusal'),
    (e: unknown) => e,
  );
  if (!isUserError(err)) throw err;
  expect(err.code).toBe('attachment_rejected');
  return err.userMessage;
}

const opts = () => ({ allowedOrigins: [allowed.origin], maxBytes: 10 * MB, maxPixels: 16_000_000, timeoutMs: 15_000 });

beforeAll(async () => {
  [allowed, foreign] = await Promise.all([startOrigin(), startOrigin()]);
  const base = sharp({ create: { width: 300, height: 200, channels: 3, background: { r: 200, g: 30, b: 60 } } });
  fixtures.png = await base.clone().png().toBuffer();
  fixtures.jpeg = await base.clone().jpeg().toBuffer();
  fixtures.webp = await base.clone().webp().toBuffer();
});

afterAll(async () => {
  for (const o of [allowed, foreign]) {
    o.server.closeAllConnections();
    await new Promise((resolve) => o.server.close(resolve));
  }
});

beforeEach(() => {
  for (const o of [allowed, foreign]) {
    o.routes.clear();
    o.requests.length = 0;
  }
});

test.each(['png', 'jpeg', 'webp'] as const)('a good %s passes with its format and size', async (format) => {
  allowed.routes.set(`/img.${format}`, sendBytes(fixtures[format], 'application/octet-stream'));
  const got = await fetchAttachment(allowed.url(`/img.${format}`), opts());
  expect(got).toMatchObject({ format, width: 300, height: 200 });
  expect(got.bytes.equals(fixtures[format])).toBe(true);
});

test('text named .png and served as image/png is not an image', async () => {
  allowed.routes.set('/fake.png', sendBytes(Buffer.from('hello, this is definitely not a picture\n'.repeat(20)), 'image/png'));
  expect(await refusal(fetchAttachment(allowed.url('/fake.png'), opts()))).toMatch(/not an image/);
});

test('a truncated header with image magic is refused as damaged', async () => {
  allowed.routes.set('/cut.png', sendBytes(fixtures.png.subarray(0, 16)));
  expect(await refusal(fetchAttachment(allowed.url('/cut.png'), opts()))).toMatch(/damaged or incomplete/);
});

test('a 30 MB body without Content-Length is cut off at the cap and the connection closed early', async () => {
  const huge = streamHuge(30 * MB, false);
  allowed.routes.set('/huge.png', huge.handler);
  expect(await refusal(fetchAttachment(allowed.url('/huge.png'), opts()))).toBe('The image is larger than the 10 MB limit.');
  await huge.state.closed;
  expect(huge.state.closedEarly).toBe(true);
  expect(huge.state.sent).toBeLessThan(30 * MB);
});

test('a 30 MB Content-Length is refused before reading the body', async () => {
  const huge = streamHuge(30 * MB, true);
  allowed.routes.set('/huge.png', huge.handler);
  expect(await refusal(fetchAttachment(allowed.url('/huge.png'), opts()))).toBe('The image is 30.0 MB; the limit is 10 MB.');
  await huge.state.closed;
  expect(huge.state.closedEarly).toBe(true);
  expect(huge.state.sent).toBeLessThan(30 * MB);
});

test('a lying Content-Length does not lift the cap: the stream is cancelled soon after 10 MB', async () => {
  let pulled = 0;
  let cancelled = false;
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      const chunk = new Uint8Array(64 * 1024);
      if (pulled === 0) chunk.set(PNG_SIG);
      pulled += chunk.length;
      c.enqueue(chunk);
      if (pulled >= 30 * MB) c.close();
    },
    cancel() {
      cancelled = true;
    },
  });
  const fetchImpl = (async () => new Response(body, { status: 200, headers: { 'content-length': '1000' } })) as typeof fetch;
  expect(await refusal(fetchAttachment(allowed.url('/x.png'), { ...opts(), fetchImpl }))).toMatch(/larger than the 10 MB limit/);
  expect(cancelled).toBe(true);
  expect(pulled).toBeLessThan(11 * MB);
});

test('the byte cap is exact, with or without Content-Length', async () => {
  const size = fixtures.png.length;
  allowed.routes.set('/img.png', sendBytes(fixtures.png));
  allowed.routes.set('/chunked.png', sendChunked(fixtures.png));
  for (const path of ['/img.png', '/chunked.png']) {
    expect((await fetchAttachment(allowed.url(path), { ...opts(), maxBytes: size })).bytes.length).toBe(size);
  }
  expect(await refusal(fetchAttachment(allowed.url('/img.png'), { ...opts(), maxBytes: size - 1 }))).toMatch(
    /^The image is .*; the limit is /,
  );
  expect(await refusal(fetchAttachment(allowed.url('/chunked.png'), { ...opts(), maxBytes: size - 1 }))).toMatch(
    /^The image is larger than/,
  );
  expect(size).toBeGreaterThan(1024);
  expect(await refusal(fetchAttachment(allowed.url('/img.png'), { ...opts(), maxBytes: 1024 }))).toBe(
    `The image is ${(size / 1024).toFixed(1)} KB; the limit is 1 KB.`,
  );
  expect(await refusal(fetchAttachment(allowed.url('/chunked.png'), { ...opts(), maxBytes: 1024 }))).toBe(
    'The image is larger than the 1 KB limit.',
  );
});

test('a PNG whose IHDR claims 20000×20000 is refused from its header', async () => {
  const bomb = bombPng();
  expect(sniffImage(bomb)).toEqual({ format: 'png', width: 20_000, height: 20_000 });
  allowed.routes.set('/bomb.png', sendBytes(bomb));
  const msg = await refusal(fetchAttachment(allowed.url('/bomb.png'), opts()));
  expect(msg).toBe('The image is 20000×20000 (400.0 megapixels); the limit is 16 megapixels.');
});

test('a URL on a foreign origin is refused without any request', async () => {
  foreign.routes.set('/img.png', sendBytes(fixtures.png));
  let calls = 0;
  const fetchImpl = ((...args: Parameters<typeof fetch>) => (calls++, fetch(...args))) as typeof fetch;
  expect(await refusal(fetchAttachment(foreign.url('/img.png'), { ...opts(), fetchImpl }))).toMatch(/only accepted from Discord/);
  expect(calls).toBe(0);
  expect(foreign.requests).toEqual([]);
});

test('a redirect to a foreign origin is refused and the foreign origin receives no request', async () => {
  foreign.routes.set('/img.png', sendBytes(fixtures.png));
  allowed.routes.set('/go', redirectTo(foreign.url('/img.png')));
  expect(await refusal(fetchAttachment(allowed.url('/go'), opts()))).toMatch(/redirects to another site/);
  expect(allowed.requests).toEqual(['/go']);
  expect(foreign.requests).toEqual([]);
});

test('redirects within the allowed origin are followed, at most three', async () => {
  allowed.routes.set('/img.png', sendBytes(fixtures.png));
  for (let i = 1; i <= 4; i += 1) allowed.routes.set(`/r${i}`, redirectTo(i === 1 ? '/img.png' : `/r${i - 1}`, 307));
  expect((await fetchAttachment(allowed.url('/r3'), opts())).width).toBe(300);
  expect(allowed.requests).toEqual(['/r3', '/r2', '/r1', '/img.png']);
  allowed.requests.length = 0;
  expect(await refusal(fetchAttachment(allowed.url('/r4'), opts()))).toMatch(/redirects too many times/);
  expect(allowed.requests).toEqual(['/r4', '/r3', '/r2', '/r1']);
});

test('URLs with credentials, other schemes or no parse are refused without any request', async () => {
  allowed.routes.set('/img.png', sendBytes(fixtures.png));
  let calls = 0;
  const fetchImpl = ((...args: Parameters<typeof fetch>) => (calls++, fetch(...args))) as typeof fetch;
  const withCreds = allowed.url('/img.png').replace('http://', 'http://user:secret@');
  expect(await refusal(fetchAttachment(withCreds, { ...opts(), fetchImpl }))).toMatch(/user name or password/);
  expect(await refusal(fetchAttachment('not a url', { ...opts(), fetchImpl }))).toMatch(/not valid/);
  expect(await refusal(fetchAttachment('file:///etc/passwd', { ...opts(), fetchImpl }))).toMatch(/only accepted/);
  expect(calls).toBe(0);
  expect(allowed.requests).toEqual([]);
});

test('a server that never answers times out', async () => {
  allowed.routes.set('/slow.png', () => undefined);
  const started = Date.now();
  const msg = await refusal(fetchAttachment(allowed.url('/slow.png'), { ...opts(), timeoutMs: 300 }));
  expect(msg).toMatch(/took longer than 1 s/);
  expect(Date.now() - started).toBeLessThan(3000);
});

test('a body that stalls midway times out', async () => {
  allowed.routes.set('/stall.png', (_req, res) => {
    res.writeHead(200, { 'content-length': String(fixtures.png.length) });
    res.write(fixtures.png.subarray(0, 40));
  });
  const msg = await refusal(fetchAttachment(allowed.url('/stall.png'), { ...opts(), timeoutMs: 300 }));
  expect(msg).toMatch(/took longer than/);
});

test('a non-2xx answer is refused with its status', async () => {
  expect(await refusal(fetchAttachment(allowed.url('/missing.png'), opts()))).toMatch(/HTTP 404/);
  allowed.routes.set('/err.png', (_req, res) => void res.writeHead(500).end());
  expect(await refusal(fetchAttachment(allowed.url('/err.png'), opts()))).toMatch(/HTTP 500/);
});

test('a refused connection is a clear refusal, not a crash', async () => {
  const gone = await startOrigin();
  await new Promise((resolve) => gone.server.close(resolve));
  const msg = await refusal(fetchAttachment(gone.url('/img.png'), { ...opts(), allowedOrigins: [gone.origin] }));
  expect(msg).toBe('The attachment could not be downloaded. Try again later.');
});

test('sniffImage reads sizes from every accepted header kind, without decoding', async () => {
  const base = sharp({ create: { width: 123, height: 45, channels: 4, background: { r: 1, g: 2, b: 3, alpha: 0.5 } } });
  const cases: [Buffer, string][] = [
    [await base.clone().png().toBuffer(), 'png'],
    [await base.clone().jpeg().toBuffer(), 'jpeg'],
    [await base.clone().jpeg({ progressive: true }).withMetadata({ orientation: 6 }).toBuffer(), 'jpeg'],
    [await base.clone().removeAlpha().webp().toBuffer(), 'webp'], // VP8
    [await base.clone().webp({ lossless: true }).toBuffer(), 'webp'], // VP8L
    [await base.clone().webp().toBuffer(), 'webp'], // VP8X (alpha)
    [await base.clone().gif().toBuffer(), 'gif'],
  ];
  for (const [bytes, format] of cases) expect(sniffImage(bytes)).toEqual({ format, width: 123, height: 45 });
  const fourccs = cases.filter(([, f]) => f === 'webp').map(([b]) => b.toString('latin1', 12, 16));
  expect(fourccs).toEqual(['VP8 ', 'VP8L', 'VP8X']);
  // Hand-made JPEG: APP0, a DHT (C4, in the SOF range but not a frame), fill bytes, then SOF2 declaring 65535×4000.
  const jpeg = Buffer.from([
    0xff, 0xd8, 0xff, 0xe0, 0x00, 0x04, 0x00, 0x00, 0xff, 0xc4, 0x00, 0x09, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0xff, 0xff, 0xc2,
    0x00, 0x0b, 0x08, 0x0f, 0xa0, 0xff, 0xff, 0x01,
  ]);
  expect(sniffImage(jpeg)).toEqual({ format: 'jpeg', width: 65535, height: 4000 });
  expect(sniffImage(Buffer.from([0xff, 0xd8, 0xff, 0xda, 0x00, 0x08]))).toBeNull(); // scan before any frame header
  expect(sniffImage(Buffer.from('GIF89a'))).toBeNull();
  expect(sniffImage(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>'))).toBeNull();
  expect(sniffImage(Buffer.alloc(0))).toBeNull();
});
