/**
 * Replicate model presets (request → prediction input) and error mapping (client errors →
 * BackendError). Pure; used by `replicate.ts`.
 * @module
 */
import { BackendError, isBackendError } from '../../core/errors.js';
import { type GenerationRequest, strengthOf } from '../../core/generation.js';
import { type FamilySettings, replicateInputs } from '../../core/presets.js';
import { type BackendJob, isImagePass, type RunSettings } from './backend.js';
import { parseRetryAfter as parseRetryAfterHeader } from './http.js';

/** `stability-ai/sdxl` version from Replicate's README example. */
export const DEFAULT_SDXL_VERSION = '8beff3369e81422112d93b89ca01426147de542cd4684c244b673b105188fe5f';

/** Official model (no version; billed per image). */
const FLUX_SCHNELL_MODEL = 'black-forest-labs/flux-schnell';
/** The community SDXL model (by version: REPLICATE_SDXL_VERSION). */
const SDXL_MODEL = 'stability-ai/sdxl';
/** Steps for an SDXL image pass standing in for a FLUX preset, which takes no image. */
const SDXL_STEPS = 30;

const FLUX_ASPECTS = ['1:1', '16:9', '21:9', '3:2', '2:3', '4:5', '5:4', '3:4', '4:3', '9:16', '9:21'] as const;

/** What to create: a community model by version, or an official model's route (no version). */
export interface PredictionSpec {
  /** `owner/name`, for lineage and the official route. */
  model: string;
  /** The community model's version; absent means the official route. */
  version?: string;
  input: Record<string, unknown>;
  /** false when the model cannot take an exact size and its images must be fitted afterwards. */
  exactSize: boolean;
  /** The sampler (sdxl's scheduler) that runs, for lineage. */
  sampler?: string;
  /** The steps and guidance sent, for the result; null guidance: the model takes none. */
  steps: number;
  guidance: number | null;
}

/** The preset's model on Replicate; a request from before presets named models says FLUX schnell or SDXL. */
function modelOf(r: GenerationRequest, preset: FamilySettings): FamilySettings {
  if (preset.model) return preset;
  return r.replicateModel === 'flux-schnell' ? { ...preset, model: FLUX_SCHNELL_MODEL, inputs: 'flux' } : { ...preset, model: SDXL_MODEL };
}

/** The flux-schnell aspect_ratio closest (in log ratio) to width/height. */
function nearestFluxAspectRatio(width: number, height: number): (typeof FLUX_ASPECTS)[number] {
  const target = Math.log(width / height);
  const distance = (a: string): number => {
    const [w, h] = a.split(':').map(Number) as [number, number];
    return Math.abs(Math.log(w / h) - target);
  };
  return FLUX_ASPECTS.reduce((best, a) => (distance(a) < distance(best) ? a : best));
}

const dataUri = (png: Buffer): string => `data:image/png;base64,${png.toString('base64')}`;

/**
 * Largest image input (pixels) we send to `stability-ai/sdxl` for img2img and upscale. The model
 * declares no bound, but in img2img mode it renders at the input's own size, untiled, on one
 * shared GPU, and the image travels inline as a data URI in the create request (Replicate advises
 * data URIs for small files only). Past this, a paid prediction risks running out of memory, so
 * the chain skips Replicate and bigger passes (2× upscales of ~1 MP images) go to boxes with an
 * upscaler or our own GPUs.
 */
export const REPLICATE_IMAGE_INPUT_MAX_PIXELS = 1536 * 1536;

/**
 * Maps a job to the prediction input of its model. Inpaint, img2img and upscale always go to sdxl
 * (flux-schnell has no image input); img2img and upscale send the image already at the target size,
 * since sdxl's img2img mode ignores width and height and keeps the input's size.
 */
export function buildPrediction(backend: string, job: BackendJob, s: RunSettings, sdxlVersion: string): PredictionSpec {
  const r = job.request;
  let entry = modelOf(r, s.preset);
  let { steps, guidance } = s;
  if (replicateInputs(entry) === 'flux') {
    if (r.kind === 'txt2img') {
      const fluxSteps = Math.min(steps, entry.maxSteps ?? 4);
      return {
        model: entry.model!,
        ...(entry.version ? { version: entry.version } : {}),
        exactSize: false,
        input: {
          prompt: r.prompt,
          aspect_ratio: nearestFluxAspectRatio(r.width, r.height),
          num_outputs: r.count,
          seed: r.seed,
          output_format: 'png',
          num_inference_steps: fluxSteps,
        },
        steps: fluxSteps,
        guidance: null,
      };
    }
    // FLUX takes no image: inpaint, Vary and Upscale of a FLUX preset run on SDXL, at SDXL's steps.
    entry = { model: SDXL_MODEL };
    steps = r.memberSteps ?? SDXL_STEPS;
    guidance = r.memberGuidance ?? 7;
  }
  const scheduler = entry.sampler ?? 'K_EULER';
  const input: Record<string, unknown> = {
    prompt: r.prompt,
    negative_prompt: r.negative,
    width: r.width,
    height: r.height,
    num_outputs: r.count,
    num_inference_steps: steps,
    guidance_scale: guidance,
    seed: r.seed,
    scheduler,
    refine: 'no_refiner',
    disable_safety_checker: false,
  };
  if (r.kind === 'inpaint') {
    if (!job.image || !job.mask) {
      throw new BackendError(backend, 'rejected', 'inpaint job without a prepared image and mask', { retryable: false });
    }
    input.image = dataUri(job.image);
    input.mask = dataUri(job.mask);
    input.prompt_strength = strengthOf(r);
  } else if (isImagePass(r.kind)) {
    if (!job.image) throw new BackendError(backend, 'rejected', `${r.kind} job without its input image`, { retryable: false });
    input.image = dataUri(job.image);
    input.prompt_strength = strengthOf(r);
  }
  const model = entry.model ?? SDXL_MODEL;
  const version = entry.version ?? (model === SDXL_MODEL ? sdxlVersion : undefined);
  return { model, ...(version ? { version } : {}), input, exactSize: true, sampler: scheduler, steps, guidance };
}

/** Seconds from a Retry-After header (delta or HTTP date), else from Replicate's "available in N second(s)" / "resets in ~Ns" text. */
export function parseRetryAfter(header: string | null, body = ''): number | undefined {
  const fromHeader = parseRetryAfterHeader(header);
  if (fromHeader !== undefined) return fromHeader;
  const m = /(?:available in|resets in)\s*~?(\d+(?:\.\d+)?)\s*s/i.exec(body);
  return m ? Number(m[1]) : undefined;
}

/** The Problem-JSON `detail` (or the raw text) from an ApiError message `Request to … failed with status …: <body>.` */
function apiDetail(message: string): string {
  const body = /failed with status \d+[^:]*: ([\s\S]*)\.$/.exec(message)?.[1] ?? message;
  try {
    const parsed = JSON.parse(body) as { detail?: unknown; title?: unknown };
    return String(parsed.detail ?? parsed.title ?? body);
  } catch {
    return body.slice(0, 300);
  }
}

/** Any error out of the client (ApiError, our fetch's BackendError, a bad JSON body) as a BackendError. */
export function mapReplicateError(backend: string, err: unknown): BackendError {
  if (isBackendError(err)) return err;
  const e = err as { name?: string; message?: string; response?: Response };
  if (e?.name === 'ApiError' && e.response) {
    const status = e.response.status;
    const detail = apiDetail(e.message ?? '');
    const opts = { status, cause: err };
    if (status === 401 || status === 403) {
      return new BackendError(backend, 'rejected', `Replicate refused the token (${status}); check REPLICATE_API_TOKEN`, {
        ...opts,
        retryable: false,
      });
    }
    if (status === 402) return new BackendError(backend, 'rejected', `no Replicate credit (402): ${detail}`, { ...opts, retryable: false });
    if (status === 429) return new BackendError(backend, 'busy', `Replicate rate limit (429): ${detail}`, opts);
    if (status >= 500) return new BackendError(backend, 'unavailable', `Replicate HTTP ${status}: ${detail}`, opts);
    return new BackendError(backend, 'rejected', `Replicate HTTP ${status}: ${detail}`, { ...opts, retryable: false });
  }
  if (err instanceof SyntaxError)
    return new BackendError(backend, 'bad-response', `Replicate sent invalid JSON: ${err.message}`, { cause: err });
  return new BackendError(backend, 'bad-response', `unexpected Replicate error: ${e?.message ?? String(err)}`, {
    cause: err,
    retryable: true,
  });
}
