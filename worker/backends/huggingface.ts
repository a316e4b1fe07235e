import { InferenceClient, setLogger } from '@huggingface/inference';
import { BackendError, isBackendError } from '../../core/errors.js';
import { type GenerationRequest, strengthOf } from '../../core/generation.js';
import { OUTPUT_LIMITS } from '../../core/image-limits.js';
import type { Logger } from '../../core/io/logger.js';
import { BUILTIN_PRESETS, type PresetCatalog } from '../../core/presets.js';
import type { BackendJob, BackendOutput, HealthStatus, ImageBackend, RunContext, RunSettings } from './backend.js';
import { backendErrors, healthReporter, isImagePass, ownSettings, presetSettings } from './backend.js';
import { HF_API_ORIGINS, hfFetch, withFetch } from './hf-fetch.js';
import { parseRetryAfter } from './http.js';
import { outputPng } from './output-image.js';

/** Settings for a dedicated Inference Endpoint (`endpointUrl`) or provider routing (`model`). */
export interface HuggingFaceBackendOptions {
  id: string;
  token?: string;
  /** Dedicated endpoint; requests go to exactly this URL. */
  endpointUrl?: string;
  /**
   * Origins output files an answer names by URL may be fetched from (HF_OUTPUT_ORIGINS), redirects
   * included: any other is refused without being contacted. Default none.
   */
  outputOrigins?: readonly string[];
  /** Byte cap on one output image (default {@link OUTPUT_LIMITS}). */
  outputMaxBytes?: number;
  /** Hub model for provider routing when there is no endpoint (default SDXL base). */
  model?: string;
  /**
   * The endpoint's handler does image-to-image (HF_INPAINT): an image with `parameters.strength`,
   * plus `mask_image` for inpaint. Turns on inpaint, img2img (Vary) and upscale (an img2img pass
   * at the target size); without it those kinds skip Hugging Face, as text-to-image models have no
   * image input.
   */
  inpaint?: boolean;
  /** Per-image request timeout (default 120 s). */
  requestTimeoutMs?: number;
  /** Presets in force (default the built-ins). */
  presets?: PresetCatalog;
  log: Logger;
}

const DEFAULT_MODEL = 'stabilityai/stable-diffusion-xl-base-1.0';

/** Fields of the client's ProviderApiError / HubApiError that the mapping needs. */
interface HttpFailure {
  name: string;
  message: string;
  httpResponse?: { status: number; body: unknown };
}

function estimatedTime(body: unknown): number | undefined {
  const t = (body as { estimated_time?: unknown } | null)?.estimated_time;
  return typeof t === 'number' && t >= 0 ? Math.ceil(t) : undefined;
}

function mapStatus(
  id: string,
  status: number,
  message: string,
  retryAfterS: number | undefined,
  body: unknown,
  cause: unknown,
): BackendError {
  const opts = { status, cause };
  // Cold start: the endpoint is scaling from zero or loading the model; that is "later", not a failure of the image.
  if (status === 503) {
    return new BackendError(id, 'busy', `endpoint loading or scaled to zero: ${message}`, {
      ...opts,
      retryAfterS: estimatedTime(body) ?? retryAfterS,
    });
  }
  if (status === 401 || status === 403) {
    return new BackendError(id, 'rejected', `Hugging Face refused the token (${status}); check HF_TOKEN`, { ...opts, retryable: false });
  }
  if (status === 429) return new BackendError(id, 'busy', `Hugging Face rate limit: ${message}`, { ...opts, retryAfterS });
  if (status >= 500) return new BackendError(id, 'unavailable', `Hugging Face HTTP ${status}: ${message}`, opts);
  return new BackendError(id, 'rejected', `Hugging Face HTTP ${status}: ${message}`, { ...opts, retryable: false });
}

/**
 * Hugging Face backend through `InferenceClient`: one request per image (seed + i), never the
 * client's own 503 retry loop, so a cold endpoint answers 'busy' with the estimated wait.
 */
export function createHuggingFaceBackend(opts: HuggingFaceBackendOptions): ImageBackend {
  const { id, log } = opts;
  const timeoutMs = opts.requestTimeoutMs ?? 120_000;
  const model = opts.model ?? DEFAULT_MODEL;
  const presets = opts.presets ?? BUILTIN_PRESETS;

  /**
   * A preset naming a model runs here through provider routing; a dedicated endpoint serves the
   * one model it was deployed with (HF_MODEL names it), so there only presets of that model run.
   */
  function settingsFor(r: GenerationRequest): RunSettings | { refused: string } {
    const s = presetSettings(presets, 'huggingface', r);
    if ('refused' in s) return s;
    if (opts.endpointUrl && s.preset.model && s.preset.model !== opts.model)
      return { refused: `preset "${r.preset}" needs ${s.preset.model}, and the endpoint serves ${opts.model ?? 'another model'}` };
    return s;
  }

  /** What made the images, for lineage: the model routed to, or the endpoint (its host only). */
  function lineage(s: RunSettings): { name: string } {
    if (!opts.endpointUrl) return { name: s.preset.model ?? model };
    const host = new URL(opts.endpointUrl).host;
    return { name: opts.model ? `${opts.model} (endpoint ${host})` : `endpoint ${host}` };
  }
  const client = new InferenceClient(opts.token ?? '', opts.endpointUrl ? { endpointUrl: opts.endpointUrl } : {});
  // Provider routing ('auto') logs its choice through the library logger, which defaults to console.
  if (!opts.endpointUrl)
    setLogger({
      debug: (m) => log.debug(m),
      info: (m) => log.debug(m),
      log: (m) => log.debug(m),
      warn: (m) => log.warn(m),
      error: (m) => log.error(m),
    });
  let inFlight = 0;
  /**
   * The images made so far of a job whose attempt failed partway, and the seconds it ran. The
   * chain's retry hands back the same job object: it requests only the missing images, and its
   * outcome (the one the chain books) counts every image served once. A new attempt is a new object.
   */
  const made = new WeakMap<BackendJob, { images: Buffer[]; seconds: number }>();

  function toBackendError(err: unknown, signal: AbortSignal, timeout: AbortSignal, retryAfterS: number | undefined): BackendError {
    if (isBackendError(err)) return err;
    if (signal.aborted) return new BackendError(id, 'cancelled', 'cancelled', { cause: err });
    if (timeout.aborted) return new BackendError(id, 'timeout', `no image from Hugging Face within ${timeoutMs} ms`, { cause: err });
    const e = err as HttpFailure;
    if (e?.name === 'ProviderApiError' && e.httpResponse) {
      return mapStatus(id, e.httpResponse.status, e.message, retryAfterS, e.httpResponse.body, err);
    }
    if (e?.name === 'ProviderOutputError') return new BackendError(id, 'bad-response', e.message, { cause: err });
    if (e?.name === 'InputError' || e?.name === 'RoutingError') {
      return new BackendError(id, 'rejected', `Hugging Face: ${e.message}`, { cause: err, retryable: false });
    }
    return new BackendError(id, 'unavailable', `cannot reach Hugging Face: ${e?.message ?? String(err)}`, { cause: err });
  }

  const errors = backendErrors(id, { badResponseRetryable: false });

  async function toPng(blob: Blob, r: GenerationRequest, n: number): Promise<Buffer> {
    // The body was read under the byte cap by hfFetch; its format is checked by its bytes here.
    return outputPng(errors, Buffer.from(await blob.arrayBuffer()), n, { width: r.width, height: r.height, fit: 'exact' });
  }

  async function makeOne(job: BackendJob, s: RunSettings, seed: number, ctx: RunContext): Promise<Buffer> {
    const r = job.request;
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = AbortSignal.any([ctx.signal, timeout]);
    let retryAfterS: number | undefined;
    const guarded = hfFetch({
      id,
      errors,
      apiOrigins: opts.endpointUrl ? [opts.endpointUrl] : HF_API_ORIGINS,
      outputOrigins: opts.outputOrigins ?? [],
      maxBytes: opts.outputMaxBytes ?? OUTPUT_LIMITS.maxBytes,
      downloadTimeoutMs: timeoutMs + 1000,
      // Observes Retry-After, which the client's error objects do not carry.
      onAnswer: (res) => {
        retryAfterS = parseRetryAfter(res.headers.get('retry-after'));
      },
    });
    const options = { signal, retry_on_error: false, fetch: guarded };
    const parameters = {
      negative_prompt: r.negative,
      width: r.width,
      height: r.height,
      num_inference_steps: s.steps,
      guidance_scale: s.guidance,
      seed,
    };
    const routing = opts.endpointUrl ? {} : { model: s.preset.model ?? model, provider: 'auto' as const };
    // The client's own fetches of output URLs (and queue polls) go through `guarded` too.
    return withFetch(guarded, async () => {
      try {
        let blob: Blob;
        if (r.kind === 'inpaint') {
          if (!job.image || !job.mask)
            throw new BackendError(id, 'rejected', 'inpaint job without a prepared image and mask', { retryable: false });
          blob = await client.imageToImage(
            {
              ...routing,
              inputs: new Blob([job.image], { type: 'image/png' }),
              parameters: { prompt: r.prompt, ...parameters, strength: strengthOf(r), mask_image: job.mask.toString('base64') },
            },
            options,
          );
        } else if (isImagePass(r.kind)) {
          if (!job.image) throw new BackendError(id, 'rejected', `${r.kind} job without its input image`, { retryable: false });
          // The image already has the target size; width and height say so to handlers that resize.
          blob = await client.imageToImage(
            {
              ...routing,
              inputs: new Blob([job.image], { type: 'image/png' }),
              parameters: { prompt: r.prompt, ...parameters, strength: strengthOf(r) },
            },
            options,
          );
        } else {
          blob = await client.textToImage({ ...routing, inputs: r.prompt, parameters }, options);
        }
        return await toPng(blob, r, seed - r.seed + 1);
      } catch (err) {
        throw toBackendError(err, ctx.signal, timeout, retryAfterS);
      }
    });
  }

  return {
    id,
    family: 'huggingface',
    capabilities: {
      kinds: opts.inpaint ? ['txt2img', 'inpaint', 'img2img', 'upscale'] : ['txt2img'],
      maxPixels: 2048 * 2048,
      maxCount: 4,
      negativePrompt: true,
      seed: true,
      previews: false,
      paid: true,
    },
    get inFlight() {
      return inFlight;
    },
    settingsFor,

    async health(signal?: AbortSignal): Promise<HealthStatus> {
      const done = healthReporter();
      const timeout = AbortSignal.timeout(3000);
      const url = opts.endpointUrl ?? `https://huggingface.co/api/models/${model}?expand[]=inferenceProviderMapping`;
      try {
        const res = await fetch(url, {
          headers: opts.token ? { Authorization: `Bearer ${opts.token}` } : {},
          signal: signal ? AbortSignal.any([timeout, signal]) : timeout,
        });
        await res.body?.cancel();
        if (res.status === 503) return done(false, 'endpoint scaled to zero or loading');
        if (res.status === 401 || res.status === 403) return done(false, 'token rejected: check HF_TOKEN');
        if (res.status >= 500) return done(false, `HTTP ${res.status}`);
        // Any other answer means reachable (a handler may well answer 404/405 to GET).
        return done(opts.endpointUrl ? true : res.ok, `HTTP ${res.status}`);
      } catch (err) {
        return done(false, timeout.aborted ? 'no answer within 3 s' : `unreachable: ${(err as Error).message}`);
      }
    },

    async generate(job: BackendJob, ctx: RunContext): Promise<BackendOutput> {
      inFlight++;
      const started = performance.now();
      const sofar = made.get(job) ?? { images: [], seconds: 0 };
      made.set(job, sofar);
      const seconds = () => sofar.seconds + (performance.now() - started) / 1000;
      try {
        if (ctx.signal.aborted) throw new BackendError(id, 'cancelled', 'cancelled');
        const { images } = sofar;
        const s = job.settings ?? ownSettings(settingsFor, job.request);
        // Endpoints make one image per call; sequential keeps a single-replica endpoint from queueing.
        while (images.length < job.request.count) images.push(await makeOne(job, s, job.request.seed + images.length, ctx));
        made.delete(job);
        log.info({ jobId: job.jobId, images: images.length, seconds: seconds() }, 'hugging face images done');
        return {
          images,
          seed: job.request.seed,
          billedSeconds: seconds(),
          billedImages: images.length,
          model: lineage(s),
          steps: s.steps,
          guidance: s.guidance,
        };
      } catch (err) {
        sofar.seconds = seconds();
        const be = isBackendError(err) ? err : new BackendError(id, 'bad-response', String(err), { cause: err, retryable: false });
        if (sofar.images.length === 0) throw be;
        // Each request that made an image was billed: the failure says so, and a retry of this job resumes.
        throw new BackendError(id, be.kind, be.message.slice(id.length + 2), {
          ...(be.status !== undefined ? { status: be.status } : {}),
          retryable: be.retryable,
          ...(be.retryAfterS !== undefined ? { retryAfterS: be.retryAfterS } : {}),
          cause: be.cause,
          billed: { seconds: sofar.seconds, images: sofar.images.length },
          resumable: true,
        });
      } finally {
        inFlight--;
      }
    },
  };
}
