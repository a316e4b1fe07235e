import sharp from 'sharp';
import { BackendError } from '../../core/errors.js';
import type { GenerationRequest } from '../../core/generation.js';
import type { Logger } from '../../core/io/logger.js';
import type { BackendJob, BackendOutput, HealthStatus, ImageBackend, RunContext } from './backend.js';
import { generateResponseSchema, infoSchema, progressSchema, upscaleResponseSchema, type A1111Progress } from './a1111-schemas.js';
import { BoxLock, mapFetchError, mapHttpStatus, withTimeout } from './http.js';

export interface A1111Options {
  id: string;
  url: string;
  /** `user:pass` for `--api-auth`. */
  auth?: string;
  /** Checkpoint requested per job through override_settings. */
  checkpoint?: string;
  pollIntervalMs?: number;
  /** The box is taken for dead when /progress fails, or says it is idle while our request is open, this long. */
  progressTimeoutMs: number;
  requestTimeoutMs?: number;
  log: Logger;
}

const CAPABILITIES = {
  kinds: ['txt2img', 'inpaint'],
  maxPixels: 2048 * 2048,
  maxCount: 4,
  negativePrompt: true,
  seed: true,
  previews: true,
  paid: false,
} as const;

function requestBody(r: GenerationRequest, checkpoint: string | undefined, job: BackendJob): Record<string, unknown> {
  const common = {
    prompt: r.prompt,
    negative_prompt: r.negative,
    width: r.width,
    height: r.height,
    steps: r.steps,
    cfg_scale: r.guidance,
    seed: r.seed,
    batch_size: r.count,
    n_iter: 1,
    sampler_name: 'DPM++ 2M',
    scheduler: 'Karras',
    send_images: true,
    save_images: false,
    ...(checkpoint ? { override_settings: { sd_model_checkpoint: checkpoint } } : {}),
  };
  if (r.kind !== 'inpaint') return common;
  if (!job.image || !job.mask) throw new BackendError('a1111', 'rejected', 'inpaint job without image or mask', { retryable: false });
  return {
    ...common,
    init_images: [job.image.toString('base64')],
    mask: job.mask.toString('base64'),
    denoising_strength: r.strength ?? 0.75,
    mask_blur: 4,
    inpaint_full_res: true,
    inpaint_full_res_padding: 32,
    inpainting_fill: 1,
    resize_mode: 0,
  };
}

/**
 * AUTOMATIC1111 / Forge / SD.Next through its `--api`. One job at a time per box; progress and
 * previews from /sdapi/v1/progress; a box that stops answering is noticed within progressTimeoutMs.
 */
export function createA1111Backend(o: A1111Options): ImageBackend & { upscale(png: Buffer, factor: number, signal: AbortSignal): Promise<Buffer> } {
  const base = o.url.replace(/\/+$/, '');
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (o.auth) headers.authorization = `Basic ${Buffer.from(o.auth).toString('base64')}`;
  const lock = new BoxLock();
  const pollMs = o.pollIntervalMs ?? 500;
  const requestTimeoutMs = o.requestTimeoutMs ?? 10 * 60_000;

  async function call(path: string, init: { method?: string; body?: unknown; signal: AbortSignal }): Promise<unknown> {
    let res: Response;
    try {
      res = await fetch(`${base}${path}`, {
        method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
        headers,
        body: init.body === undefined ? undefined : JSON.stringify(init.body),
        signal: init.signal,
      });
    } catch (err) {
      throw mapFetchError(o.id, err, init.signal);
    }
    const text = await res.text().catch((err: unknown) => {
      throw mapFetchError(o.id, err, init.signal);
    });
    if (!res.ok) throw mapHttpStatus(o.id, res.status, text, 'A1111_AUTH');
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new BackendError(o.id, 'bad-response', `HTTP ${res.status} with a body that is not JSON`);
    }
  }

  async function toPngs(images: string[], r: GenerationRequest): Promise<Buffer[]> {
    if (images.length < r.count) throw new BackendError(o.id, 'bad-response', `returned ${images.length} of ${r.count} images`);
    return Promise.all(
      images.slice(0, r.count).map(async (b64) => {
        const buf = Buffer.from(b64.replace(/^data:[^,]+,/, ''), 'base64');
        const meta = await sharp(buf).metadata().catch(() => null);
        if (!meta?.format) throw new BackendError(o.id, 'bad-response', 'returned an image that does not decode');
        if (meta.width !== r.width || meta.height !== r.height) {
          throw new BackendError(o.id, 'bad-response', `returned ${meta.width}×${meta.height}, asked ${r.width}×${r.height}`);
        }
        return meta.format === 'png' ? buf : sharp(buf).png().toBuffer();
      }),
    );
  }

  /** Polls /progress until `done` settles; rejects when the box looks dead or hung. */
  function watch(ctx: RunContext, done: Promise<unknown>, abortRequest: (err: BackendError) => void): () => void {
    let stopped = false;
    let lastOk = performance.now();
    let idleSince: number | null = null;
    let lastStep = -1;
    const tick = async () => {
      while (!stopped) {
        await new Promise((r) => setTimeout(r, pollMs));
        if (stopped) return;
        let p: A1111Progress;
        try {
          p = progressSchema.parse(await call('/sdapi/v1/progress?skip_current_image=false', { signal: withTimeout(Math.max(pollMs * 4, 2000)) }));
        } catch {
          if (performance.now() - lastOk > o.progressTimeoutMs) {
            return abortRequest(new BackendError(o.id, 'timeout', `no progress answer for ${o.progressTimeoutMs} ms`));
          }
          continue;
        }
        const now = performance.now();
        lastOk = now;
        const jobs = p.state.job_count ?? 0;
        // Idle while our request is open means the box lost or never started it (a hung server).
        if (jobs === 0) {
          idleSince ??= now;
          if (now - idleSince > o.progressTimeoutMs) {
            return abortRequest(new BackendError(o.id, 'timeout', `box idle for ${o.progressTimeoutMs} ms while the request is open`));
          }
          continue;
        }
        idleSince = null;
        const step = p.state.sampling_step ?? 0;
        const total = p.state.sampling_steps ?? 0;
        if (step !== lastStep || p.current_image) {
          lastStep = step;
          ctx.onProgress({
            step,
            total,
            fraction: Math.min(1, Math.max(0, p.progress)),
            preview: p.current_image ? Buffer.from(p.current_image, 'base64') : undefined,
          });
        }
      }
    };
    void tick();
    void done.finally(() => (stopped = true)).catch(() => undefined);
    return () => (stopped = true);
  }

  async function run(job: BackendJob, ctx: RunContext): Promise<BackendOutput> {
    const r = job.request;
    const started = performance.now();
    const request = new AbortController();
    let failure: BackendError | undefined;
    const abortRequest = (err: BackendError) => {
      failure = err;
      request.abort(err);
    };
    const onCancel = () => {
      // Best effort: the interrupt stops the sampler; aborting our request frees the worker.
      void call('/sdapi/v1/interrupt', { method: 'POST', signal: withTimeout(3000) }).catch(() => undefined);
      abortRequest(new BackendError(o.id, 'cancelled', 'cancelled', { retryable: false }));
    };
    if (ctx.signal.aborted) onCancel();
    ctx.signal.addEventListener('abort', onCancel, { once: true });
    const path = r.kind === 'inpaint' ? '/sdapi/v1/img2img' : '/sdapi/v1/txt2img';
    const post = call(path, { body: requestBody(r, o.checkpoint, job), signal: AbortSignal.any([request.signal, AbortSignal.timeout(requestTimeoutMs)]) });
    const stop = watch(ctx, post, abortRequest);
    try {
      const body = generateResponseSchema.safeParse(await post);
      if (!body.success) throw new BackendError(o.id, 'bad-response', 'response is not {images, info}');
      const info = body.data.info ? infoSchema.safeParse(JSON.parse(body.data.info)) : undefined;
      const images = await toPngs(body.data.images, r);
      return {
        images,
        seed: info?.success && info.data.seed !== undefined ? info.data.seed : r.seed,
        billedSeconds: (performance.now() - started) / 1000,
        billedImages: images.length,
      };
    } catch (err) {
      throw failure ?? (err instanceof BackendError ? err : mapFetchError(o.id, err, request.signal));
    } finally {
      stop();
      ctx.signal.removeEventListener('abort', onCancel);
    }
  }

  return {
    id: o.id,
    family: 'a1111',
    capabilities: CAPABILITIES,
    get inFlight() {
      return lock.inFlight;
    },
    async health(signal?: AbortSignal): Promise<HealthStatus> {
      const t0 = performance.now();
      try {
        const models = await call('/sdapi/v1/sd-models', { signal: withTimeout(3000, signal) });
        const n = Array.isArray(models) ? models.length : 0;
        return { ok: true, detail: `${n} model${n === 1 ? '' : 's'}`, latencyMs: performance.now() - t0 };
      } catch (err) {
        return { ok: false, detail: err instanceof Error ? err.message : String(err), latencyMs: performance.now() - t0 };
      }
    },
    async generate(job, ctx) {
      try {
        return await lock.run(ctx.signal, () => run(job, ctx));
      } catch (err) {
        if (ctx.signal.aborted && !(err instanceof BackendError)) {
          throw new BackendError(o.id, 'cancelled', 'cancelled while waiting for the box', { retryable: false });
        }
        throw err;
      }
    },
    /** AUTOMATIC1111's own upscaler (extras tab), used by the Upscale button when the box has one. */
    async upscale(png, factor, signal) {
      return lock.run(signal, async () => {
        const body = upscaleResponseSchema.safeParse(
          await call('/sdapi/v1/extra-single-image', {
            body: { image: png.toString('base64'), upscaling_resize: factor, upscaler_1: 'R-ESRGAN 4x+' },
            signal: AbortSignal.any([signal, AbortSignal.timeout(requestTimeoutMs)]),
          }),
        );
        if (!body.success) throw new BackendError(o.id, 'bad-response', 'upscale response without image');
        return sharp(Buffer.from(body.data.image, 'base64')).png().toBuffer();
      });
    },
  };
}
