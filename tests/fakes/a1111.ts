import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { gzipSync } from 'node:zlib';
import sharp from 'sharp';

/**
 * How the fake box behaves on generation (and upscale) requests:
 * - `hang`: accepts the POST and never answers; /progress stays idle.
 * - `freeze`: the whole process stops (a GPU driver hang, a deadlocked server): every request on
 *   every route is accepted and never answered, /progress and /sd-models included.
 * - `stall`: starts the job, then the sampler stops moving (GPU hang); /progress answers, busy, forever.
 * - `error500`: CUDA out of memory (500). `garbage`: 200 with an HTML body.
 * - `wrong-size`: images 64 px wider than asked. `reject-401`: every /sdapi route refuses the credentials.
 * - `die-mid-job`: after two steps the process "crashes": every socket is destroyed and every later
 *   request too, until setMode() revives it.
 */
export type FakeA1111Mode = 'ok' | 'hang' | 'freeze' | 'stall' | 'error500' | 'garbage' | 'wrong-size' | 'die-mid-job' | 'reject-401';

/** A checkpoint on the box: listed by /sd-models as `name.safetensors [hash]`. */
export interface FakeA1111Model {
  name: string;
  /** Short hash (10 hex), as A1111 shows it. */
  hash: string;
}

export interface FakeA1111Options {
  /** Delay per sampling step (default 5 ms). */
  stepDelayMs?: number;
  /** `user:pass[,user2:pass2]` required as HTTP Basic auth on /sdapi routes, like `--api-auth`. */
  auth?: string;
  mode?: FakeA1111Mode;
  /** The box's `samples_format` option (default png). */
  samplesFormat?: 'png' | 'jpg' | 'webp';
  /** Checkpoints in models/Stable-diffusion; the first is loaded at start (default SDXL base and refiner). */
  models?: FakeA1111Model[];
}

/** Every request the fake received. */
export interface FakeA1111Request {
  /** Date.now() when the body was read. */
  at: number;
  method: string;
  path: string;
  query: string;
  /** Parsed JSON body, if it was JSON. */
  json?: unknown;
  headers: IncomingHttpHeaders;
}

/** One txt2img/img2img request and what became of it. */
export interface FakeA1111Job {
  path: string;
  receivedAt: number;
  /** When it got the box's lock and started sampling. */
  startedAt?: number;
  /** When its connection closed (answered, dropped or destroyed). */
  finishedAt?: number;
  initImages: number;
  hasMask: boolean;
  outcome?: 'done' | 'interrupted' | 'rejected' | 'hung' | 'died' | 'garbage' | 'error';
  images?: number;
  prompt: string;
  /** The checkpoint it ran on (override_settings, else the loaded one; unknown names fall back like A1111's). */
  model?: string;
  sampler?: string;
}

const SAMPLERS = [
  'DPM++ 2M',
  'DPM++ SDE',
  'DPM++ 2M SDE',
  'DPM++ 2M SDE Heun',
  'DPM++ 2S a',
  'DPM++ 3M SDE',
  'Euler a',
  'Euler',
  'LMS',
  'Heun',
  'DPM2',
  'DPM2 a',
  'DPM fast',
  'DPM adaptive',
  'Restart',
  'DDIM',
  'DDIM CFG++',
  'PLMS',
  'UniPC',
  'LCM',
];
const SCHEDULERS = [
  'Automatic',
  'Uniform',
  'Karras',
  'Exponential',
  'Polyexponential',
  'SGM Uniform',
  'KL Optimal',
  'Align Your Steps',
  'Simple',
  'Normal',
  'DDIM',
  'Beta',
];
const UPSCALERS = ['None', 'Lanczos', 'Nearest', 'ESRGAN_4x', 'LDSR', 'R-ESRGAN 4x+', 'R-ESRGAN 4x+ Anime6B', 'ScuNET', 'SwinIR 4x'];
const DEFAULT_MODELS: FakeA1111Model[] = [
  { name: 'sd_xl_base_1.0', hash: '31e35c80fc' },
  { name: 'sd_xl_refiner_1.0', hash: '7440042bbd' },
];
const sdModel = (m: FakeA1111Model) => ({
  title: `${m.name}.safetensors [${m.hash}]`,
  model_name: m.name,
  hash: m.hash,
  sha256: `${m.hash}${'0'.repeat(54)}`,
  filename: `/models/Stable-diffusion/${m.name}.safetensors`,
  config: null,
});
const INT_FIELDS = [
  'steps',
  'width',
  'height',
  'batch_size',
  'n_iter',
  'seed',
  'subseed',
  'resize_mode',
  'mask_blur',
  'inpainting_fill',
  'inpaint_full_res_padding',
];
const FLOAT_FIELDS = ['cfg_scale', 'denoising_strength'];
const BOOL_FIELDS = ['send_images', 'save_images', 'inpaint_full_res'];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function colorFor(seed: number, i: number) {
  const v = Math.imul((seed + i) >>> 0, 2654435761) >>> 0;
  return { r: v & 255, g: (v >>> 8) & 255, b: (v >>> 16) & 255 };
}

async function image(width: number, height: number, seed: number, i: number, format: 'png' | 'jpg' | 'webp'): Promise<Buffer> {
  const s = sharp({ create: { width, height, channels: 3, background: colorFor(seed, i) } });
  return (format === 'jpg' ? s.jpeg() : format === 'webp' ? s.webp() : s.png()).toBuffer();
}

/** A1111's api_middleware error shape: HTTPException text goes to `detail`, anything else only to `errors`. */
function apiError(error: string, text: string, status: number) {
  return error === 'HTTPException'
    ? { error, detail: text, body: '', errors: `${status}: ${text}` }
    : { error, detail: '', body: '', errors: text };
}
const OOM = 'CUDA out of memory. Tried to allocate 2.50 GiB (GPU 0; 11.99 GiB total capacity; 9.12 GiB already allocated)';

function b64decode(s: string): Buffer {
  return Buffer.from(s.replace(/^data:[^,]*,/, ''), 'base64');
}

async function decodes(s: unknown): Promise<boolean> {
  if (typeof s !== 'string' || s.length === 0) return false;
  return sharp(b64decode(s))
    .metadata()
    .then((m) => Boolean(m.width))
    .catch(() => false);
}

function timestamp(d = new Date()): string {
  return d.toISOString().replace(/[-:T]/g, '').slice(0, 14);
}

/** Pydantic v1 style 422 for the first mistyped field, or null. */
function validateTypes(body: Record<string, unknown>): unknown {
  const bad = (field: string, type: string, msg: string) => ({ detail: [{ loc: ['body', field], msg, type }] });
  for (const f of INT_FIELDS) {
    const v = body[f];
    if (
      v !== undefined &&
      v !== null &&
      !(typeof v === 'number' || (typeof v === 'string' && v.trim() !== '' && Number.isInteger(Number(v))))
    ) {
      return bad(f, 'type_error.integer', 'value is not a valid integer');
    }
  }
  for (const f of FLOAT_FIELDS) {
    const v = body[f];
    if (v !== undefined && v !== null && !(typeof v === 'number' || (typeof v === 'string' && Number.isFinite(Number(v))))) {
      return bad(f, 'type_error.float', 'value is not a valid float');
    }
  }
  for (const f of BOOL_FIELDS) {
    const v = body[f];
    if (v !== undefined && v !== null && typeof v !== 'boolean' && v !== 0 && v !== 1)
      return bad(f, 'type_error.bool', 'value could not be parsed to a boolean');
  }
  return null;
}

/** `DPM++ 2M Karras` style legacy names are split into sampler + scheduler, as A1111 does. */
function knownSampler(name: string): boolean {
  const lower = name.toLowerCase();
  if (SAMPLERS.some((s) => s.toLowerCase() === lower)) return true;
  return SCHEDULERS.some((sch) => lower.endsWith(` ${sch.toLowerCase()}`) && SAMPLERS.some((s) => `${s} ${sch}`.toLowerCase() === lower));
}

const num = (v: unknown, d: number) => (v === undefined || v === null ? d : Math.trunc(Number(v)));

/**
 * A fake AUTOMATIC1111 `--api` server on 127.0.0.1: one generation at a time behind a lock (others
 * wait with their request open), real images, global /progress with moving steps and previews,
 * /interrupt, extras upscale, Basic auth, A1111's error bodies, and failure modes (see FakeA1111Mode).
 */
export async function startFakeA1111(opts: FakeA1111Options = {}) {
  let mode: FakeA1111Mode = opts.mode ?? 'ok';
  const stepDelayMs = opts.stepDelayMs ?? 5;
  const format = opts.samplesFormat ?? 'png';
  const credentials = new Set(
    (opts.auth ?? '')
      .split(',')
      .filter(Boolean)
      .map((c) => `Basic ${Buffer.from(c).toString('base64')}`),
  );
  const requests: FakeA1111Request[] = [];
  const unhandled: FakeA1111Request[] = [];
  const jobs: FakeA1111Job[] = [];
  const sockets = new Set<Socket>();
  const counters = { generations: 0, upscales: 0, interrupts: 0, open: 0, maxConcurrent: 0 };
  let dead = false;
  let closed = false;
  let onClosed!: () => void;
  const closedP = new Promise<void>((r) => (onClosed = r));

  // shared.state: idle keeps the last job's step numbers, as the real State does.
  const st = {
    job: '',
    jobCount: 0,
    jobNo: 0,
    step: 0,
    steps: 0,
    interrupted: false,
    skipped: false,
    jobTimestamp: '0',
    startedAt: 0,
    seed: 0,
    prompt: '',
  };
  const stateDict = () => ({
    skipped: st.skipped,
    interrupted: st.interrupted,
    stopping_generation: false,
    job: st.job,
    job_count: st.jobCount,
    job_timestamp: st.jobTimestamp,
    job_no: st.jobNo,
    sampling_step: st.step,
    sampling_steps: st.steps,
  });

  let tail: Promise<void> = Promise.resolve();
  /** modules.call_queue.queue_lock */
  function acquire(): Promise<() => void> {
    let release!: () => void;
    const prev = tail;
    tail = new Promise<void>((r) => (release = r));
    return prev.then(() => release);
  }

  const models = opts.models ?? DEFAULT_MODELS;
  /** shared.opts.sd_model_checkpoint: the loaded model. */
  let loaded = models[0]!;
  /** checkpoint_aliases: title, file name, name and hash all name a model. */
  const findModel = (name: string) => models.find((m) => [sdModel(m).title, `${m.name}.safetensors`, m.name, m.hash].includes(name.trim()));

  // Live previews are of the running job's own image (a colour from its seed), so a test can tell whose preview it saw.
  const previews = new Map<string, Promise<string>>();
  /** base64 preview → the prompt of the job it was taken from. */
  const previewOwners = new Map<string, string>();
  function previewFor(seed: number, step: number, prompt: string): Promise<string> {
    const k = `${seed}:${step}`;
    let p = previews.get(k);
    if (!p) {
      p = image(32, 32, seed, step, 'png').then((b) => {
        const b64 = b.toString('base64');
        previewOwners.set(b64, prompt);
        return b64;
      });
      previews.set(k, p);
    }
    return p;
  }

  function send(req: IncomingMessage, res: ServerResponse, t0: number, status: number, payload: unknown, type = 'application/json'): void {
    if (res.headersSent || res.destroyed) return;
    let buf = Buffer.from(typeof payload === 'string' && type !== 'application/json' ? payload : JSON.stringify(payload));
    const headers: Record<string, string | number> = {
      'content-type': type,
      'x-process-time': ((performance.now() - t0) / 1000).toFixed(4),
    };
    // GZipMiddleware(minimum_size=1000)
    if (buf.length >= 1000 && /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''))) {
      buf = gzipSync(buf);
      headers['content-encoding'] = 'gzip';
      headers.vary = 'Accept-Encoding';
    }
    headers['content-length'] = buf.length;
    res.writeHead(status, headers).end(buf);
  }

  function die(): void {
    dead = true;
    for (const s of sockets) s.destroy();
  }

  async function generation(
    req: IncomingMessage,
    res: ServerResponse,
    t0: number,
    path: string,
    body: Record<string, unknown>,
  ): Promise<void> {
    const img2img = path === '/sdapi/v1/img2img';
    const job: FakeA1111Job = {
      path,
      receivedAt: Date.now(),
      initImages: Array.isArray(body.init_images) ? body.init_images.length : 0,
      hasMask: typeof body.mask === 'string' && body.mask.length > 0,
      prompt: String(body.prompt ?? ''),
    };
    jobs.push(job);
    counters.open++;
    counters.maxConcurrent = Math.max(counters.maxConcurrent, counters.open);
    res.on('close', () => {
      counters.open--;
      job.finishedAt = Date.now();
    });
    const reject = (status: number, payload: unknown) => {
      job.outcome = 'rejected';
      send(req, res, t0, status, payload);
    };

    const typeError = validateTypes(body);
    if (typeError) return reject(422, typeError);
    if (typeof body.sampler_name === 'string' && !knownSampler(body.sampler_name))
      return reject(400, apiError('HTTPException', 'Sampler not found', 400));
    const batch = Math.max(1, num(body.batch_size, 1));
    const nIter = Math.max(1, num(body.n_iter, 1));
    if (img2img) {
      if (!Array.isArray(body.init_images) || body.init_images.length === 0)
        return reject(404, apiError('HTTPException', 'Init image not found', 404));
      for (const im of [...(body.init_images as unknown[]), ...(body.mask ? [body.mask] : [])]) {
        if (!(await decodes(im))) return reject(500, apiError('HTTPException', 'Invalid encoded image', 500));
      }
      if (body.init_images.length > batch) {
        return reject(
          500,
          apiError('RuntimeError', `bad number of images passed: ${body.init_images.length}; expecting ${batch} or less`, 500),
        );
      }
    }
    if (mode === 'hang') {
      job.outcome = 'hung';
      return;
    }
    if (mode === 'error500') {
      job.outcome = 'error';
      return send(req, res, t0, 500, apiError('OutOfMemoryError', OOM, 500));
    }

    const release = await acquire();
    try {
      if (closed || dead || res.destroyed) return;
      job.startedAt = Date.now();
      const steps = Math.max(1, num(body.steps, 50));
      const width = num(body.width, 512);
      const height = num(body.height, 512);
      const seed = num(body.seed, -1) === -1 ? Math.floor(Math.random() * 4294967294) : num(body.seed, -1);
      // override_settings: an unknown checkpoint falls back to the loaded one ("Checkpoint … not found; loading fallback").
      const override = (body.override_settings as { sd_model_checkpoint?: unknown } | null | undefined)?.sd_model_checkpoint;
      const model = (typeof override === 'string' ? findModel(override) : undefined) ?? loaded;
      if (body.override_settings_restore_afterwards === false) loaded = model;
      job.model = `${model.name}.safetensors`;
      job.sampler = typeof body.sampler_name === 'string' ? body.sampler_name : 'Euler';
      Object.assign(st, {
        seed,
        prompt: job.prompt,
        job: img2img ? 'scripts_img2img' : 'scripts_txt2img',
        jobCount: nIter,
        jobNo: 0,
        step: 0,
        steps,
        interrupted: false,
        skipped: false,
        jobTimestamp: timestamp(),
        startedAt: performance.now(),
      });
      let doneIters = 0;
      batches: for (let it = 0; it < nIter; it++) {
        st.jobNo = it;
        st.step = 0;
        for (let s = 1; s <= steps; s++) {
          await sleep(stepDelayMs);
          if (closed) return;
          if (st.interrupted) break batches;
          if (mode === 'stall' && s >= 2) {
            job.outcome = 'hung';
            await closedP;
            return;
          }
          st.step = s;
          if (mode === 'die-mid-job' && s >= 2) {
            job.outcome = 'died';
            die();
            return;
          }
        }
        doneIters++;
      }
      if (mode === 'garbage') {
        job.outcome = 'garbage';
        return send(req, res, t0, 200, '<html><body>502 Bad Gateway (nginx)</body></html>', 'text/html');
      }
      const count = batch * doneIters;
      const w = mode === 'wrong-size' ? width + 64 : width;
      const images = await Promise.all(Array.from({ length: count }, (_, i) => image(w, height, seed, i, format)));
      // save_images with several images puts a grid first, like return_grid.
      const grid = body.save_images === true && count > 1 ? [await image(w * count, height, seed, 99, format)] : [];
      const seeds = images.map((_, i) => seed + i);
      const prompt = String(body.prompt ?? '');
      const negative = String(body.negative_prompt ?? '');
      const info = {
        prompt,
        all_prompts: seeds.map(() => prompt),
        negative_prompt: negative,
        all_negative_prompts: seeds.map(() => negative),
        seed,
        all_seeds: seeds,
        subseed: seed + 1,
        all_subseeds: seeds.map((s) => s + 1),
        subseed_strength: 0,
        width,
        height,
        sampler_name: body.sampler_name ?? 'Euler',
        cfg_scale: Number(body.cfg_scale ?? 7),
        steps,
        batch_size: batch,
        restore_faces: false,
        face_restoration_model: null,
        sd_model_name: model.name,
        sd_model_hash: model.hash,
        sd_vae_name: null,
        sd_vae_hash: null,
        seed_resize_from_w: -1,
        seed_resize_from_h: -1,
        denoising_strength: img2img ? Number(body.denoising_strength ?? 0.75) : null,
        extra_generation_params: { 'Schedule type': body.scheduler ?? 'Automatic' },
        index_of_first_image: grid.length,
        infotexts: seeds.map((s) => `${prompt}\nNegative prompt: ${negative}\nSteps: ${steps}, Seed: ${s}, Size: ${width}x${height}`),
        styles: [],
        job_timestamp: st.jobTimestamp,
        clip_skip: 1,
        is_using_inpainting_conditioning: false,
        version: 'v1.10.1',
      };
      // The echo is the whole request model, defaults included.
      const defaults = {
        prompt: '',
        negative_prompt: '',
        styles: null,
        seed: -1,
        subseed: -1,
        subseed_strength: 0,
        sampler_name: null,
        sampler_index: 'Euler',
        scheduler: null,
        batch_size: 1,
        n_iter: 1,
        steps: 50,
        cfg_scale: 7,
        width: 512,
        height: 512,
        override_settings: null,
        override_settings_restore_afterwards: true,
        script_name: null,
        script_args: [],
        alwayson_scripts: {},
        send_images: true,
        save_images: false,
      };
      const parameters =
        img2img && body.include_init_images !== true ? { ...defaults, ...body, init_images: null, mask: null } : { ...defaults, ...body };
      job.outcome = st.interrupted ? 'interrupted' : 'done';
      job.images = count;
      if (!st.interrupted) counters.generations++;
      const out = body.send_images === false ? [] : [...grid, ...images].map((b) => b.toString('base64'));
      send(req, res, t0, 200, { images: out, parameters, info: JSON.stringify(info) });
    } finally {
      st.job = '';
      st.jobCount = 0;
      release();
    }
  }

  async function progress(req: IncomingMessage, res: ServerResponse, t0: number, query: URLSearchParams): Promise<void> {
    if (st.jobCount === 0)
      return send(req, res, t0, 200, { progress: 0, eta_relative: 0, state: stateDict(), current_image: null, textinfo: null });
    const p = Math.min(1, 0.01 + st.jobNo / st.jobCount + (1 / st.jobCount) * (st.step / st.steps));
    const elapsed = (performance.now() - st.startedAt) / 1000;
    const skip = query.get('skip_current_image') === 'true';
    const current = skip || st.step === 0 ? null : await previewFor(st.seed, st.step, st.prompt);
    send(req, res, t0, 200, {
      progress: p,
      eta_relative: elapsed / p - elapsed,
      state: stateDict(),
      current_image: current,
      textinfo: null,
    });
  }

  /**
   * Extras tab: ExtrasSingleImageRequest (upscaling_resize 1-8, default 2), the queue lock, state
   * job "extras" with no sampling steps, and Upscaler.upscale's size: int(side × scale) // 8 × 8.
   */
  async function upscale(req: IncomingMessage, res: ServerResponse, t0: number, body: Record<string, unknown>): Promise<void> {
    const factorIn = body.upscaling_resize ?? 2;
    const factor = Number(factorIn);
    if (typeof factorIn === 'boolean' || !Number.isFinite(factor)) {
      return send(req, res, t0, 422, {
        detail: [{ loc: ['body', 'upscaling_resize'], msg: 'value is not a valid float', type: 'type_error.float' }],
      });
    }
    if (factor < 1 || factor > 8) {
      const [op, limit] = factor < 1 ? ['ge', 1] : ['le', 8];
      const words = op === 'ge' ? 'greater than or equal to' : 'less than or equal to';
      return send(req, res, t0, 422, {
        detail: [
          {
            loc: ['body', 'upscaling_resize'],
            msg: `ensure this value is ${words} ${limit}`,
            type: `value_error.number.not_${op}`,
            ctx: { limit_value: limit },
          },
        ],
      });
    }
    if (mode === 'hang' || mode === 'stall') return;
    if (mode === 'error500') return send(req, res, t0, 500, apiError('OutOfMemoryError', OOM, 500));
    const upscaler = String(body.upscaler_1 ?? 'None');
    if (!UPSCALERS.includes(upscaler))
      return send(req, res, t0, 500, apiError('AssertionError', `could not find upscaler named ${upscaler}`, 500));
    if (!(await decodes(body.image))) return send(req, res, t0, 500, apiError('HTTPException', 'Invalid encoded image', 500));
    const release = await acquire();
    try {
      if (closed || dead || res.destroyed) return;
      counters.upscales++;
      Object.assign(st, {
        job: 'extras',
        jobCount: 1,
        jobNo: 0,
        step: 0,
        steps: 0,
        interrupted: false,
        skipped: false,
        jobTimestamp: timestamp(),
        startedAt: performance.now(),
      });
      await sleep(stepDelayMs);
      if (mode === 'die-mid-job') return die();
      if (mode === 'garbage') return send(req, res, t0, 200, '<html>oops</html>', 'text/html');
      const src = b64decode(String(body.image));
      const m = await sharp(src).metadata();
      const side = (v: number | undefined) => Math.max(8, Math.floor(((v ?? 1) * factor) / 8) * 8);
      const out = await sharp(src).resize(side(m.width), side(m.height), { fit: 'fill' }).png().toBuffer();
      send(req, res, t0, 200, {
        html_info: `<p>Postprocess upscale by: ${factor}, Postprocess upscaler: ${upscaler}</p>`,
        image: out.toString('base64'),
      });
    } finally {
      st.job = '';
      st.jobCount = 0;
      release();
    }
  }

  const ROUTES: Record<string, string[]> = {
    '/sdapi/v1/txt2img': ['POST'],
    '/sdapi/v1/img2img': ['POST'],
    '/sdapi/v1/progress': ['GET'],
    '/sdapi/v1/interrupt': ['POST'],
    '/sdapi/v1/sd-models': ['GET'],
    '/sdapi/v1/options': ['GET'],
    '/sdapi/v1/extra-single-image': ['POST'],
    '/internal/ping': ['GET'],
  };

  async function handle(req: IncomingMessage, res: ServerResponse, raw: string, t0: number): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const method = req.method ?? 'GET';
    let json: unknown;
    let jsonError = false;
    if (raw.length > 0) {
      try {
        json = JSON.parse(raw);
      } catch {
        jsonError = true;
      }
    }
    const rec: FakeA1111Request = { at: Date.now(), method, path: url.pathname, query: url.search, json, headers: req.headers };
    requests.push(rec);
    if (dead) {
      req.socket.destroy();
      return;
    }
    // A frozen process accepts the connection and never answers anything.
    if (mode === 'freeze') return;
    const allowed = ROUTES[url.pathname];
    if (!allowed?.includes(method)) {
      unhandled.push(rec);
      const status = allowed ? 405 : 404;
      return send(req, res, t0, status, apiError('HTTPException', allowed ? 'Method Not Allowed' : 'Not Found', status));
    }
    if (url.pathname === '/internal/ping') return send(req, res, t0, 200, {});
    if (opts.auth || mode === 'reject-401') {
      const given = req.headers.authorization;
      if (!given) return send(req, res, t0, 401, apiError('HTTPException', 'Not authenticated', 401));
      if (mode === 'reject-401' || !credentials.has(given))
        return send(req, res, t0, 401, apiError('HTTPException', 'Incorrect username or password', 401));
    }
    if (method === 'POST' && url.pathname !== '/sdapi/v1/interrupt') {
      if (jsonError)
        return send(req, res, t0, 422, {
          detail: [{ loc: ['body', 0], msg: 'Expecting value: line 1 column 1 (char 0)', type: 'value_error.jsondecode' }],
        });
      if (json === undefined)
        return send(req, res, t0, 422, { detail: [{ loc: ['body'], msg: 'field required', type: 'value_error.missing' }] });
      if (typeof json !== 'object' || json === null || Array.isArray(json)) {
        return send(req, res, t0, 422, { detail: [{ loc: ['body'], msg: 'value is not a valid dict', type: 'type_error.dict' }] });
      }
    }
    const body = (json ?? {}) as Record<string, unknown>;
    switch (url.pathname) {
      case '/sdapi/v1/txt2img':
      case '/sdapi/v1/img2img':
        return generation(req, res, t0, url.pathname, body);
      case '/sdapi/v1/progress':
        return progress(req, res, t0, url.searchParams);
      case '/sdapi/v1/interrupt':
        counters.interrupts++;
        st.interrupted = true;
        return send(req, res, t0, 200, {});
      case '/sdapi/v1/sd-models':
        return send(req, res, t0, 200, models.map(sdModel));
      case '/sdapi/v1/options':
        return send(req, res, t0, 200, { sd_model_checkpoint: sdModel(loaded).title, samples_format: format });
      case '/sdapi/v1/extra-single-image':
        return upscale(req, res, t0, body);
    }
  }

  const server = createServer((req, res) => {
    const t0 = performance.now();
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      handle(req, res, Buffer.concat(chunks).toString('utf8'), t0).catch((err: unknown) => {
        send(req, res, t0, 500, apiError((err as Error)?.name ?? 'Exception', String((err as Error)?.message ?? err), 500));
      });
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };

  return {
    url: `http://127.0.0.1:${port}`,
    /** Every request, in arrival order. */
    requests,
    /** Requests to routes the fake does not serve (answered 404/405); a test expects none. */
    unhandled,
    /** Every txt2img/img2img request with its timings. */
    jobs,
    /** Generations that ran to the end and were answered with images. */
    get generations() {
      return counters.generations;
    },
    get interrupts() {
      return counters.interrupts;
    },
    /** extra-single-image requests that got the box's lock and ran. */
    get upscales() {
      return counters.upscales;
    },
    /** The prompt of the job a live preview (as sent, base64 or bytes) was taken from. */
    previewOwner(preview: string | Buffer): string | undefined {
      return previewOwners.get(typeof preview === 'string' ? preview : preview.toString('base64'));
    },
    /** Most generation requests open on the box at the same time (running or waiting for the lock). */
    get maxConcurrent() {
      return counters.maxConcurrent;
    },
    get mode() {
      return mode;
    },
    /** Changes behaviour from the next request on; also revives a box that died. */
    setMode(m: FakeA1111Mode) {
      mode = m;
      dead = false;
    },
    /** Closes at once, destroying hanging and in-flight requests. */
    async close() {
      closed = true;
      onClosed();
      for (const s of sockets) s.destroy();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A running fake AUTOMATIC1111 server. */
export type FakeA1111 = Awaited<ReturnType<typeof startFakeA1111>>;
