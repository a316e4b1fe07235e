/**
 * Fake Hugging Face Inference Endpoint on loopback: POST at any path with JSON
 * `{inputs, parameters}` answers a real PNG. Text-to-image: `parameters.width × height`.
 * Image-to-image (`parameters.prompt` set, `inputs` = base64 image, as the client sends it with
 * parameters): `width × height`, else `target_size`, else the input image's size; an `inputs` that
 * is not an image is a 400. Faults: cold start (503 "currently loading"), hang, 500, 401, 429,
 * non-image body, wrong size; hostile answers: a body of any type, the image named by URL
 * (`{"output": [url]}`, the form hf-inference answers in), a redirect. GET at any path is a health probe.
 * @module
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';

export type FakeHFMode = 'ok' | 'hang' | 'error500' | 'garbage' | 'wrong-size' | '401' | '429';

export interface FakeHFOptions {
  /** When set, requests must carry `Authorization: Bearer <token>` (else 401). */
  token?: string;
  /** Answer the next n POSTs with 503 "currently loading" (GETs see 503 too while n > 0). */
  loadingFor?: number;
  /** `estimated_time` in the 503 body (default 20). */
  estimatedTime?: number;
  mode?: FakeHFMode;
  /** Faults partway through a job: the Nth POST that reaches the model (1-based, over the fake's life) answers in this mode instead. */
  modeByPost?: Record<number, FakeHFMode>;
  /** Hostile output: this body as the answer, of `contentType` (default image/png), declaring `contentLength` (default its length). */
  output?: { body: Buffer; contentLength?: number; contentType?: string };
  /** Hostile output: answers `{"output": [answerUrl]}` (JSON) instead of the image, for the client to fetch. */
  answerUrl?: string;
  /** Hostile output: answers POSTs with a 307 to this URL. */
  redirectTo?: string;
}

export interface FakeHFRequest {
  /** Date.now() when the request arrived. */
  at: number;
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  /** Parsed JSON body, or null. */
  body: any;
}

export interface FakeHFEndpoint {
  /** The endpoint URL to configure (`http://127.0.0.1:<port>/`). */
  readonly url: string;
  readonly requests: FakeHFRequest[];
  /** Live options; tests may change them between calls. */
  readonly options: FakeHFOptions & { mode: FakeHFMode; loadingFor: number };
  close(): Promise<void>;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** Starts the fake endpoint on 127.0.0.1 with an ephemeral port. */
export async function startFakeHFEndpoint(opts: FakeHFOptions = {}): Promise<FakeHFEndpoint> {
  const options = { mode: 'ok' as FakeHFMode, loadingFor: 0, ...opts };
  const requests: FakeHFRequest[] = [];
  let posts = 0;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const raw = await readBody(req);
    let body: any = null;
    try {
      body = raw ? JSON.parse(raw) : null;
    } catch {
      body = null;
    }
    requests.push({ at: Date.now(), method, path: new URL(req.url ?? '/', 'http://x').pathname, headers: req.headers, body });

    if (options.token !== undefined && req.headers.authorization !== `Bearer ${options.token}`) {
      return sendJson(res, 401, { error: 'Invalid credentials in Authorization header' });
    }
    if (options.loadingFor > 0) {
      if (method !== 'GET') options.loadingFor--;
      return sendJson(res, 503, {
        error: 'Model stabilityai/stable-diffusion-xl-base-1.0 is currently loading',
        estimated_time: options.estimatedTime ?? 20,
      });
    }
    if (method === 'POST') posts++;
    switch ((method === 'POST' && options.modeByPost?.[posts]) || options.mode) {
      case 'hang':
        return; // never answers; close() drops the socket
      case '401':
        return sendJson(res, 401, { error: 'Invalid credentials in Authorization header' });
      case '429':
        return sendJson(res, 429, { error: 'Rate limit reached. You reached free usage limit (reset hourly).' }, { 'retry-after': '7' });
      case 'error500':
        return sendJson(res, 500, { error: 'CUDA out of memory. Tried to allocate 2.00 GiB' });
      default:
        break;
    }
    if (method === 'GET') return sendJson(res, 200, { status: 'ok' });
    if (method !== 'POST' || typeof body?.inputs !== 'string') {
      return sendJson(res, 400, { error: 'expected JSON {inputs, parameters}' });
    }
    if (options.redirectTo) {
      res.writeHead(307, { location: options.redirectTo });
      return void res.end();
    }
    if (options.answerUrl) return sendJson(res, 200, { output: [options.answerUrl] });
    if (options.output) {
      res.writeHead(200, {
        'content-type': options.output.contentType ?? 'image/png',
        'content-length': options.output.contentLength ?? options.output.body.length,
      });
      return void res.end(options.output.body);
    }
    if (options.mode === 'garbage') {
      res.writeHead(200, { 'content-type': 'text/html' });
      return void res.end('<html><body>502 Bad Gateway (but with status 200)</body></html>');
    }
    const params = body.parameters ?? {};
    let input: { width?: number; height?: number } = {};
    if (params.prompt !== undefined) {
      const meta = await sharp(Buffer.from(body.inputs, 'base64'))
        .metadata()
        .catch(() => undefined);
      if (!meta?.width) return sendJson(res, 400, { error: 'cannot identify image file' });
      input = meta;
    }
    const width = Number(params.width ?? params.target_size?.width ?? input.width ?? 1024) + (options.mode === 'wrong-size' ? 64 : 0);
    const height = Number(params.height ?? params.target_size?.height ?? input.height ?? 1024);
    const png = await sharp({ create: { width, height, channels: 3, background: { r: 200, g: 90, b: Number(params.seed ?? 0) % 256 } } })
      .png()
      .toBuffer();
    res.writeHead(200, { 'content-type': 'image/png', 'content-length': png.length });
    res.end(png);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: `fake hf: ${String(err)}` });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}/`,
    requests,
    options,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
