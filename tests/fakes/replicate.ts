/**
 * Fake Replicate HTTP API on loopback for the real `replicate` client: community (`version`) and
 * official (`/models/{owner}/{name}`) predictions, `Prefer: wait`, polling, cancel, output files
 * rendered by sharp, and injected faults (429, 402/422/5xx on create, failures, hangs, garbage).
 * Unknown routes are answered 599 and collected in `unhandled`.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';

export type FakeReplicateMode = 'ok' | 'hang' | 'garbage' | 'wrong-size';

export interface FakeReplicateOptions {
  /** Accepted Bearer token (default `r8_fake`). */
  token?: string;
  /** Time from create to a terminal state (default 300 ms); the first 20 % is `starting`. */
  durationMs?: number;
  /** When set, predictions end `failed` with this error (e.g. 'NSFW content detected…'). */
  failWith?: string;
  /** ok; hang = never leaves `processing`; garbage = output files are not images; wrong-size = files 64 px too wide. */
  mode?: FakeReplicateMode;
  /** `metrics.predict_time` to report (default durationMs / 1000). */
  predictTimeS?: number;
  /**
   * Hostile output: the output URLs a prediction names (default its own files), what its files
   * answer instead of an image (`body`, e.g. a decompression bomb), or a redirect elsewhere.
   */
  output?: { url?: (file: string) => string; body?: Buffer; redirectTo?: string };
}

export interface FakeRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: any;
}

export interface FakePrediction {
  id: string;
  model: string;
  version: string;
  official: boolean;
  input: Record<string, any>;
  createdAt: number;
  canceledAt?: number;
  /** sdxl img2img mode (an `image` without a `mask`): the input image's size, which the output takes. */
  imageSize?: { width: number; height: number };
  /** Set when the model itself would fail (e.g. an input image PIL cannot open). */
  modelError?: string;
  /** Created in `hang` mode: it never ends unless cancelled, whatever the mode later becomes. */
  hang?: boolean;
}

export interface FakeReplicate {
  /** API base including `/v1`, as the client's `baseUrl`. */
  readonly url: string;
  readonly requests: FakeRequest[];
  readonly predictions: FakePrediction[];
  /** Ids of predictions a client cancelled. */
  readonly cancels: string[];
  /** `METHOD path` of requests to unknown routes (answered 599); tests assert it stays empty. */
  readonly unhandled: string[];
  /** Live options; tests may change them between calls. */
  readonly options: Required<Omit<FakeReplicateOptions, 'failWith' | 'predictTimeS' | 'output'>> &
    Pick<FakeReplicateOptions, 'failWith' | 'predictTimeS' | 'output'>;
  /** The next `n` API requests get 429 with `Retry-After: retryAfterS`. */
  rateLimitNext(n: number, retryAfterS: number): void;
  /** The next prediction create answers `status` with `body` (default: a Problem-JSON for that status). */
  failNextCreate(status: number, body?: unknown): void;
  close(): Promise<void>;
}

/** flux-schnell's aspect_ratio enum at one megapixel, rounded to multiples of 64. */
function fluxSizeFor(aspect: string): { width: number; height: number } {
  const [w, h] = aspect.split(':').map(Number) as [number, number];
  const side = (r: number): number => Math.round(Math.sqrt(1024 * 1024 * r) / 64) * 64;
  return { width: side(w / h), height: side(h / w) };
}

/** Cog's input validation for the sdxl inputs we send: the 422 detail lines, or none. */
function validateSdxlInput(input: Record<string, any>): string[] {
  const problems: string[] = [];
  const range = (field: string, min: number, max: number) => {
    const v = input[field];
    if (v === undefined) return;
    if (typeof v !== 'number') problems.push(`- input.${field}: Invalid type. Expected: number, given: ${typeof v}`);
    else if (v < min) problems.push(`- input.${field}: Must be greater than or equal to ${min}`);
    else if (v > max) problems.push(`- input.${field}: Must be less than or equal to ${max}`);
  };
  range('num_outputs', 1, 4);
  range('num_inference_steps', 1, 500);
  range('guidance_scale', 1, 50);
  range('prompt_strength', 0, 1);
  for (const f of ['image', 'mask']) {
    const v = input[f];
    if (v !== undefined && !(typeof v === 'string' && /^(data:|https?:\/\/)/.test(v)))
      problems.push(`- input.${f}: Does not match format 'uri'`);
  }
  return problems;
}

/** The bytes of a `data:` URI, or undefined for anything else. */
function dataUriBytes(uri: unknown): Buffer | undefined {
  const m = typeof uri === 'string' ? /^data:[^,]*;base64,(.*)$/s.exec(uri) : null;
  return m ? Buffer.from(m[1]!, 'base64') : undefined;
}

const PROBLEMS: Record<number, { title: string; detail: string }> = {
  401: { title: 'Unauthenticated', detail: 'You did not pass a valid authentication token' },
  402: {
    title: 'Insufficient credit',
    detail: 'You have insufficient credit to run this model. Go to https://replicate.com/account/billing#billing to purchase credit.',
  },
  422: { title: 'Input validation failed', detail: '- input: prompt is required\n' },
  500: { title: 'Internal Server Error', detail: 'Something went wrong' },
};

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function progressLogs(fraction: number, total: number, seed: unknown): string {
  const lines = [`Using seed: ${String(seed ?? 1234)}`];
  const done = Math.floor(fraction * total);
  for (let step = 0; step <= done; step++) {
    const pct = Math.floor((step / total) * 100);
    const bar = '█'.repeat(Math.floor(pct / 10)).padEnd(10, ' ');
    lines.push(`${String(pct).padStart(3)}%|${bar}| ${step}/${total} [00:01<00:01,  9.50it/s]`);
  }
  return `${lines.join('\n')}\n`;
}

/** Starts the fake on 127.0.0.1 with an ephemeral port. */
export async function startFakeReplicate(opts: FakeReplicateOptions = {}): Promise<FakeReplicate> {
  const options = { token: 'r8_fake', durationMs: 300, mode: 'ok' as FakeReplicateMode, ...opts };
  const requests: FakeRequest[] = [];
  const predictions: FakePrediction[] = [];
  const cancels: string[] = [];
  const unhandled: string[] = [];
  let throttle = { n: 0, retryAfterS: 1 };
  let createFailure: { status: number; body: unknown } | undefined;
  let origin = '';

  function view(p: FakePrediction): Record<string, unknown> {
    const d = options.durationMs;
    const elapsed = Date.now() - p.createdAt;
    const hang = p.hang === true || options.mode === 'hang';
    const done = !hang && elapsed >= d && p.canceledAt === undefined;
    const failure = options.failWith ?? p.modelError;
    const status =
      p.canceledAt !== undefined ? 'canceled' : done ? (failure ? 'failed' : 'succeeded') : elapsed < d * 0.2 ? 'starting' : 'processing';
    const total = Number(p.input.num_inference_steps ?? (p.official ? 4 : 50));
    const fraction = done ? 1 : Math.min(hang ? 0.5 : 0.99, Math.max(0, (elapsed - d * 0.2) / (d * 0.8)));
    const count = Number(p.input.num_outputs ?? 1);
    const ext = p.official ? String(p.input.output_format ?? 'webp') : 'png';
    const succeeded = status === 'succeeded';
    const iso = (ms: number): string => new Date(ms).toISOString();
    return {
      id: p.id,
      model: p.model,
      version: p.version,
      input: p.input,
      logs: status === 'starting' ? '' : progressLogs(fraction, total, p.input.seed),
      output: succeeded
        ? Array.from({ length: count }, (_, i) => {
            const file = `/files/${p.id}/out-${i}.${ext}`;
            return options.output?.url ? options.output.url(file) : `${origin}${file}`;
          })
        : null,
      data_removed: false,
      error: status === 'failed' ? failure : null,
      status,
      source: 'api',
      created_at: iso(p.createdAt),
      started_at: status === 'starting' ? null : iso(p.createdAt + d * 0.2),
      completed_at: done ? iso(p.createdAt + d) : (p.canceledAt && iso(p.canceledAt)) || null,
      // Run time is billed whatever the end: a failed prediction's, and a cancelled one's up to the cancel.
      metrics: done
        ? {
            predict_time: options.predictTimeS ?? d / 1000,
            total_time: d / 1000,
            ...(p.official && succeeded ? { image_count: count } : {}),
          }
        : p.canceledAt !== undefined
          ? {
              predict_time: Math.min(options.predictTimeS ?? Infinity, Math.max(0, p.canceledAt - (p.createdAt + d * 0.2)) / 1000),
              total_time: (p.canceledAt - p.createdAt) / 1000,
            }
          : {},
      urls: {
        get: `${origin}/v1/predictions/${p.id}`,
        cancel: `${origin}/v1/predictions/${p.id}/cancel`,
        web: `https://replicate.com/p/${p.id}`,
      },
    };
  }

  async function holdUntilDone(p: FakePrediction, seconds: number, res: ServerResponse): Promise<void> {
    const deadline = Date.now() + seconds * 1000;
    let gone = false;
    res.on('close', () => (gone = true));
    while (!gone && Date.now() < deadline && ['starting', 'processing'].includes(String(view(p).status))) {
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async function serveFile(res: ServerResponse, id: string, index: number, ext: string): Promise<void> {
    const p = predictions.find((x) => x.id === id);
    if (!p || index >= Number(p.input.num_outputs ?? 1)) return send(res, 404, { detail: 'Not found' });
    if (options.output?.redirectTo) {
      res.writeHead(302, { location: options.output.redirectTo });
      return void res.end();
    }
    if (options.output?.body) {
      res.writeHead(200, { 'content-type': `image/${ext}` });
      return void res.end(options.output.body);
    }
    if (options.mode === 'garbage') {
      res.writeHead(200, { 'content-type': `image/${ext}` });
      return void res.end('<html>definitely not an image</html>');
    }
    // sdxl in img2img mode keeps the input image's size and ignores width/height.
    const size = p.official
      ? fluxSizeFor(String(p.input.aspect_ratio ?? '1:1'))
      : (p.imageSize ?? { width: Number(p.input.width ?? 1024), height: Number(p.input.height ?? 1024) });
    const width = size.width + (options.mode === 'wrong-size' ? 64 : 0);
    const img = sharp({ create: { width, height: size.height, channels: 3, background: { r: 40 * index, g: 120, b: 200 } } });
    const bytes = ext === 'webp' ? await img.webp().toBuffer() : ext === 'jpg' ? await img.jpeg().toBuffer() : await img.png().toBuffer();
    res.writeHead(200, { 'content-type': ext === 'jpg' ? 'image/jpeg' : `image/${ext}`, 'content-length': bytes.length });
    res.end(bytes);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const method = req.method ?? 'GET';
    const raw = await readBody(req);
    let body: any = null;
    try {
      body = raw ? JSON.parse(raw) : null;
    } catch {
      body = raw;
    }
    requests.push({ method, path, headers: req.headers, body });

    const file = /^\/files\/([^/]+)\/out-(\d+)\.(png|webp|jpg)$/.exec(path);
    if (method === 'GET' && file) return serveFile(res, file[1]!, Number(file[2]), file[3]!);
    if (!path.startsWith('/v1/')) return unknown();
    if (req.headers.authorization !== `Bearer ${options.token}`) {
      return send(res, 401, { ...PROBLEMS[401], status: 401 }, { 'content-type': 'application/problem+json' });
    }
    if (throttle.n > 0) {
      throttle.n--;
      return send(
        res,
        429,
        { detail: `Request was throttled. Expected available in ${throttle.retryAfterS} second.` },
        { 'retry-after': String(throttle.retryAfterS) },
      );
    }

    const official = /^\/v1\/models\/([^/]+)\/([^/]+)\/predictions$/.exec(path);
    if (method === 'POST' && (official || path === '/v1/predictions')) {
      if (createFailure) {
        const { status, body: failBody } = createFailure;
        createFailure = undefined;
        return send(res, status, failBody ?? { ...(PROBLEMS[status] ?? { title: 'Error', detail: 'error' }), status });
      }
      if (!official && !/^[0-9a-f]{64}$/.test(String(body?.version))) {
        return send(res, 422, { title: 'Invalid version or not permitted', detail: 'The specified version does not exist', status: 422 });
      }
      const input: Record<string, any> = body?.input ?? {};
      if (!official) {
        const problems = validateSdxlInput(input);
        if (problems.length > 0)
          return send(res, 422, { title: 'Input validation failed', detail: `${problems.join('\n')}\n`, status: 422 });
      }
      const p: FakePrediction = {
        id: randomBytes(13).toString('hex').slice(0, 26),
        model: official ? `${official[1]}/${official[2]}` : 'stability-ai/sdxl',
        version: official ? 'hidden' : String(body.version),
        official: Boolean(official),
        input,
        createdAt: Date.now(),
        ...(options.mode === 'hang' ? { hang: true } : {}),
      };
      // Only data URIs are read (this fake does not fetch URLs); their size becomes the output's.
      if (!official && String(input.image).startsWith('data:') && input.mask === undefined) {
        const meta = await sharp(dataUriBytes(input.image) ?? Buffer.alloc(0))
          .metadata()
          .catch(() => undefined);
        if (meta?.width && meta.height) p.imageSize = { width: meta.width, height: meta.height };
        else p.modelError = "cannot identify image file '/tmp/image.png'";
      }
      predictions.push(p);
      const prefer = /^wait(?:=(\d+))?$/.exec(String(req.headers.prefer ?? '').trim());
      if (prefer) await holdUntilDone(p, prefer[1] ? Number(prefer[1]) : 60, res);
      return send(
        res,
        201,
        prefer
          ? view(p)
          : { ...view(p), status: 'starting', logs: '', output: null, error: null, started_at: null, completed_at: null, metrics: {} },
      );
    }
    const get = /^\/v1\/predictions\/([^/]+)$/.exec(path);
    const cancel = /^\/v1\/predictions\/([^/]+)\/cancel$/.exec(path);
    const p = predictions.find((x) => x.id === (get ?? cancel)?.[1]);
    if (method === 'GET' && get)
      return p ? send(res, 200, view(p)) : send(res, 404, { title: 'Not found', detail: 'Not found', status: 404 });
    if (method === 'POST' && cancel) {
      if (!p) return send(res, 404, { title: 'Not found', detail: 'Not found', status: 404 });
      cancels.push(p.id);
      if (['starting', 'processing'].includes(String(view(p).status))) p.canceledAt = Date.now();
      return send(res, 200, view(p));
    }
    if (method === 'GET' && path === '/v1/account') {
      return send(res, 200, { type: 'user', username: 'fake', name: 'Fake User', github_url: 'https://github.com/fake' });
    }
    return unknown();

    function unknown(): void {
      unhandled.push(`${method} ${path}`);
      send(res, 599, { detail: `fake replicate: unhandled route ${method} ${path}` });
    }
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      unhandled.push(`ERROR ${req.method} ${req.url}: ${String(err)}`);
      if (!res.headersSent) send(res, 500, { detail: String(err) });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url: `${origin}/v1`,
    requests,
    predictions,
    cancels,
    unhandled,
    options,
    rateLimitNext(n, retryAfterS) {
      throttle = { n, retryAfterS };
    },
    failNextCreate(status, body) {
      createFailure = { status, body };
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
