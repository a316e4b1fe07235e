import { z } from 'zod';
import { UserError } from './errors.js';
import { type GenerationRequest, type JobResult, LIMITS, promptText, STRENGTH } from './generation.js';
import { buttonText } from './messages.js';
import { BUILTIN_PRESETS, type Preset } from './presets.js';

/** Upscales stop here (about 2048 × 2048): beyond it SDXL backends and Discord previews struggle. */
const UPSCALE_MAX_PIXELS = 2048 * 2048;
const UPSCALE_FACTOR = 2;
/** Below this gain an upscale is not worth a member's quota, so the button is not offered. */
const UPSCALE_MIN_GAIN = 1.25;

/** Which follow-up buttons a result offers; each depends on what the job can be re-run from. */
export interface ResultActions {
  /** Same parameters, new seed: only where nothing but parameters is needed. */
  reroll: boolean;
  /** A modal with the prompt pre-filled, then a new txt2img job. */
  edit: boolean;
  /** Per image: an img2img variation of it. */
  vary: boolean;
  /** Per image: a larger rendition. */
  upscale: boolean;
}

export function resultActions(request: GenerationRequest, result: Pick<JobResult, 'width' | 'height'>): ResultActions {
  const fromText = request.kind === 'txt2img';
  return {
    reroll: fromText,
    edit: fromText,
    vary: request.kind !== 'upscale',
    upscale: upscaleSize(result.width, result.height) !== null,
  };
}

const multipleOf8 = (n: number) => Math.max(64, Math.round(n / 8) * 8);

/** Variations of larger images (inpaint keeps a photo's own size) are made at SDXL's native area. */
const VARY_MAX_PIXELS = 1536 * 1024;
const SDXL_PIXELS = 1024 * 1024;

/** Size of a variation: the image's own size in multiples of 8, or its aspect at about one megapixel when larger. */
function varySize(width: number, height: number): { width: number; height: number } {
  if (width * height <= VARY_MAX_PIXELS) return { width: multipleOf8(width), height: multipleOf8(height) };
  const scale = Math.sqrt(SDXL_PIXELS / (width * height));
  return { width: Math.round((width * scale) / 64) * 64, height: Math.round((height * scale) / 64) * 64 };
}

/** Target size of an upscale: twice the size, capped at {@link UPSCALE_MAX_PIXELS}; null when the gain would be too small. */
export function upscaleSize(width: number, height: number): { width: number; height: number } | null {
  const factor = Math.min(UPSCALE_FACTOR, Math.sqrt(UPSCALE_MAX_PIXELS / (width * height)));
  if (factor < UPSCALE_MIN_GAIN) return null;
  const w = Math.floor((width * factor) / 8) * 8;
  const h = Math.floor((height * factor) / 8) * 8;
  return { width: w, height: h };
}

/** The source of a follow-up job: the finished job and which of its images. */
export interface SourceImage {
  jobId: string;
  request: GenerationRequest;
  result: Pick<JobResult, 'width' | 'height' | 'seed'>;
  index: number;
}

function checkIndex(src: SourceImage): void {
  if (src.index >= src.request.count) throw new UserError('stale_button', buttonText.stale);
}

/** Common fields of a job made from one posted image; the caller adds `inputKeys` once the image is parked. */
function fromImage(src: SourceImage, seed: number): GenerationRequest {
  const { inputKeys: _inputs, strength: _s, source: _src, ...rest } = src.request;
  return { ...rest, count: 1, seed, source: { jobId: src.jobId, index: src.index } };
}

/** A variation of image `index`: same prompt and settings, a new seed, img2img from that image. */
export function variationRequest(src: SourceImage, seed: number): GenerationRequest {
  checkIndex(src);
  if (!resultActions(src.request, src.result).vary) throw new UserError('action_unavailable', buttonText.unavailable);
  return {
    ...fromImage(src, seed),
    kind: 'img2img',
    ...varySize(src.result.width, src.result.height),
    strength: STRENGTH.img2img,
  };
}

/** An upscale of image `index` to twice its size (capped); keeps the image's own seed. */
export function upscaleRequest(src: SourceImage): GenerationRequest {
  checkIndex(src);
  const size = upscaleSize(src.result.width, src.result.height);
  if (!size) throw new UserError('action_unavailable', buttonText.cannotUpscale);
  const seed = Math.min(src.result.seed + src.index, LIMITS.seedMax);
  return { ...fromImage(src, seed), kind: 'upscale', ...size, strength: STRENGTH.upscale };
}

/** What the Edit modal sends back. */
export const editFieldsSchema = z.object({
  prompt: z.string(),
  negative: z.string().optional(),
});
export type EditFields = z.infer<typeof editFieldsSchema>;

/** The text the Edit modal starts from: the member's own words, without the preset's style. */
export function editDefaults(request: GenerationRequest): { prompt: string; negative: string } {
  return {
    prompt: request.memberPrompt ?? request.prompt,
    negative: request.memberNegative ?? (request.memberPrompt ? '' : request.negative),
  };
}

/** The same job with the member's edited prompt (the preset's style added again) and a new seed. */
export function editedRequest(
  request: GenerationRequest,
  fields: EditFields,
  seed: number,
  preset: Preset | undefined = BUILTIN_PRESETS.find(request.preset),
): GenerationRequest {
  if (request.kind !== 'txt2img') throw new UserError('action_unavailable', buttonText.unavailable);
  const { memberNegative: _n, ...rest } = request;
  return {
    ...rest,
    ...promptText(fields.prompt, fields.negative, preset),
    seed,
  };
}
