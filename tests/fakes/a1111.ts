import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import sharp from 'sharp';

export type FakeA1111Mode = 'ok' | 'hang' | 'error500' | 'garbage' | 'wrong-size' | 'die-mid-job' | 'reject-401';

export interface FakeA1111Options {
  /** Delay per sampling step. */
  stepDelayMs?: number;
  /** `user:pass` required as HTTP Basic auth, like `--api-auth`. */
  auth?: string;
  mode?: FakeA1111Mode;
}

export interface A1111Request {
  at: number;
  method: string;
  path: string;
  json?: Record<string, unknown>;
  headers: IncomingMessage['headers'];
}

interface Current {
  step: number;
  steps: number;
  interrupted: boolean;
}

function colorFor(seed: number, i: number) {
  const v = (seed + i * 7919) >>> 0;
  return { r: v % 256, g: (v >> 8) % 256, b: (v >> 16) % 256 };
}

async function png(width: number, height: number, seed: number, i: number): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: colorFor(seed, i) } }).png().toBuffer();
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A fake AUTOMATIC1111 `--api` server: one generation at a time, real PNGs, moving /progress with
 * previews, /interrupt, Basic auth, and failure modes (hang, 500, garbage, wrong size, dying mid-job).
 */
export async function startFakeA1111(opts: FakeA1111Options = {}) {
  let mode: FakeA1111Mode = opts.mode ?? 'ok';
  const stepDelayMs = opts.stepDelayMs ?? 5;
  const requests: A1111Request[] = [];
  const unhandled: A1111Request[] = [];
  const sockets = new Set<Socket>();
  let lock: Promise<void> = Promise.resolve();
  let current: Current | null = null;
  let dead = false;
  let active = 0;
  const state = { generations: 0, interrupts: 0, maxConcurrent: 0 };
  const preview = await png(64, 64, 1, 0);

  function authorized(req: IncomingMessage): boolean {
    if (!opts.auth) return true;
    return req.headers.authorization === `Basic ${Buffer.from(opts.auth).toString('base64')}`;
  }

  async function generate(req: IncomingMessage, res: ServerResponse, body: Record<string, unknown>, img2img: boolean) {
    if (img2img && !Array.isArray(body.init_images)) {
      return json(res, 404, { error: 'HTTPException', detail: 'Init image not found', body: '', errors: '404: Init image not found' });
    }
    if (mode === 'hang') return; // never answers
    if (mode === 'error500') return json(res, 500, { error: 'OutOfMemoryError', detail: '', body: '', errors: 'CUDA out of memory' });
    if (mode === 'reject-401') return json(res, 401, { detail: 'Not authenticated' });
    let release!: () => void;
    const prev = lock;
    lock = new Promise((r) => (release = r));
    await prev;
    active++;
    state.maxConcurrent = Math.max(state.maxConcurrent, active);
    const steps = Number(body.steps ?? 50);
    const count = Number(body.batch_size ?? 1) * Number(body.n_iter ?? 1);
    const seed = Number(body.seed ?? -1) === -1 ? 12345 : Number(body.seed);
    current = { step: 0, steps, interrupted: false };
    try {
      for (let s = 1; s <= steps; s++) {
        await sleep(stepDelayMs);
        if (current.interrupted) break;
        current.step = s;
        if (mode === 'die-mid-job' && s >= 2) {
          dead = true;
          req.socket.destroy();
          return;
        }
      }
      if (mode === 'garbage') {
        res.writeHead(200, { 'content-type': 'text/html' }).end('<html>Internal proxy page</html>');
        return;
      }
      const done = current.interrupted ? Math.min(count, Math.floor((current.step / steps) * count)) : count;
      const w = Number(body.width ?? 512) + (mode === 'wrong-size' ? 64 : 0);
      const h = Number(body.height ?? 512);
      const images = await Promise.all(Array.from({ length: done }, (_, i) => png(w, h, seed, i)));
      state.generations++;
      json(res, 200, {
        images: images.map((b) => b.toString('base64')),
        parameters: { ...body, init_images: null, mask: null },
        info: JSON.stringify({ seed, all_seeds: images.map((_, i) => seed + i), width: w, height: h, prompt: body.prompt }),
      });
    } finally {
      current = null;
      active--;
      release();
    }
  }

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const raw = Buffer.concat(chunks).toString();
      let body: Record<string, unknown> | undefined;
      try {
        body = raw ? (JSON.parse(raw) as Record<string, unknown>) : undefined;
      } catch {
        body = undefined;
      }
      const rec: A1111Request = { at: Date.now(), method: req.method ?? 'GET', path: url.pathname, json: body, headers: req.headers };
      requests.push(rec);
      if (dead) {
        req.socket.destroy();
        return;
      }
      if (url.pathname === '/internal/ping') return json(res, 200, {});
      if (url.pathname.startsWith('/sdapi/') && !authorized(req)) {
        return json(res, 401, { error: 'HTTPException', detail: req.headers.authorization ? 'Incorrect username or password' : 'Not authenticated', body: '', errors: '401' });
      }
      switch (`${req.method} ${url.pathname}`) {
        case 'POST /sdapi/v1/txt2img':
          return void generate(req, res, body ?? {}, false);
        case 'POST /sdapi/v1/img2img':
          return void generate(req, res, body ?? {}, true);
        case 'GET /sdapi/v1/progress': {
          const c = current;
          if (!c) {
            return json(res, 200, {
              progress: 0,
              eta_relative: 0,
              state: { skipped: false, interrupted: false, job: '', job_count: 0, job_timestamp: '0', job_no: 0, sampling_step: 0, sampling_steps: 0 },
              current_image: null,
              textinfo: null,
            });
          }
          const skip = url.searchParams.get('skip_current_image') === 'true';
          return json(res, 200, {
            progress: Math.min(1, 0.01 + c.step / c.steps),
            eta_relative: 1,
            state: { skipped: false, interrupted: c.interrupted, job: 'scripts_txt2img', job_count: 1, job_timestamp: '0', job_no: 0, sampling_step: c.step, sampling_steps: c.steps },
            current_image: skip || c.step === 0 ? null : preview.toString('base64'),
            textinfo: null,
          });
        }
        case 'POST /sdapi/v1/interrupt':
          state.interrupts++;
          if (current) current.interrupted = true;
          return json(res, 200, {});
        case 'GET /sdapi/v1/sd-models':
          return json(res, 200, [{ title: 'sd_xl_base_1.0.safetensors', model_name: 'sd_xl_base_1.0', hash: null, sha256: null, filename: '/m/sd_xl_base_1.0.safetensors', config: null }]);
        case 'POST /sdapi/v1/extra-single-image': {
          const src = Buffer.from(String(body?.image ?? ''), 'base64');
          const factor = Number(body?.upscaling_resize ?? 2);
          return void sharp(src)
            .metadata()
            .then((m) => sharp(src).resize((m.width ?? 64) * factor, (m.height ?? 64) * factor).png().toBuffer())
            .then((out) => json(res, 200, { html_info: '', image: out.toString('base64') }))
            .catch(() => json(res, 500, { error: 'RuntimeError', detail: '', body: '', errors: 'bad image' }));
        }
        default:
          unhandled.push(rec);
          return json(res, 404, { error: 'HTTPException', detail: 'Not Found', body: '', errors: '404: Not Found' });
      }
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    unhandled,
    get generations() {
      return state.generations;
    },
    get interrupts() {
      return state.interrupts;
    },
    get maxConcurrent() {
      return state.maxConcurrent;
    },
    setMode(m: FakeA1111Mode) {
      mode = m;
      dead = false;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export type FakeA1111 = Awaited<ReturnType<typeof startFakeA1111>>;
