import sharp from 'sharp';
import type { GenerationRequest } from '../core/generation.js';
import { ATTACHMENT_LIMITS } from '../core/image-limits.js';
import type { InpaintOriginal } from '../core/io/inpaint-image.js';
import type { ResultStore } from '../core/io/results.js';
import type { SourceImage } from './backends/backend.js';
import { ChainError } from './backends/chain.js';

/**
 * Most pixels a source image may decode to (sharp's limitInputPixels). Results of /inpaint keep the
 * original's size, which the bot caps at 16 MP by default (ATTACHMENT_MAX_PIXELS), so a posted
 * image the bot hands back is at most that; anything claiming more is refused before decoding.
 */
export const DEFAULT_INPUT_MAX_PIXELS = ATTACHMENT_LIMITS.maxPixels;

/** Neutral fill under transparent pixels, so the model does not start from black (as for inpaint). */
const FILL = { r: 128, g: 128, b: 128 };

/** A job's input images, ready for the backend, plus what the processor needs afterwards. */
export interface JobInputs {
  image?: Buffer;
  mask?: Buffer;
  /** Upscale: the untouched source, for a backend with its own upscaler. */
  source?: SourceImage;
  /** Inpaint: the upright original and its feathered full-size mask, to paste the result back. */
  paste?: { original: InpaintOriginal; maskFull: Buffer };
}

const refuse = (message: string) => new ChainError('rejected', [], false, message);

/**
 * Loads the images the bot parked in Redis for this job. Missing keys mean they expired (the job
 * waited longer than RESULT_TTL_SECONDS): a clear, final refusal, since a retry cannot bring them back.
 */
export async function loadJobInputs(results: ResultStore, r: GenerationRequest, opts: { maxPixels: number }): Promise<JobInputs> {
  const keys = r.inputKeys;
  if (r.kind === 'txt2img') return {};
  if (r.kind === 'inpaint') {
    if (!keys?.mask || !keys.original || !keys.maskFull) throw refuse('the job is missing its input images.');
    const [image, mask, original, maskFull] = await results.getMany([keys.image, keys.mask, keys.original, keys.maskFull]);
    if (!image || !mask || !original || !maskFull) throw refuse('the uploaded image expired before the job ran. Please try again.');
    const meta = await sharp(original).metadata();
    return { image, mask, paste: { maskFull, original: { png: original, width: meta.width ?? 0, height: meta.height ?? 0 } } };
  }
  if (!keys) throw refuse('the job is missing its source image.');
  const bytes = await results.get(keys.image);
  if (!bytes) throw refuse('the source image expired before the job ran. Please try again.');
  return prepareImagePass(bytes, r, opts.maxPixels);
}

/**
 * img2img and upscale: the source resized (lanczos) to exactly width × height as PNG, the start of
 * an img2img pass; for upscale also the source itself, which an upscaler works from.
 */
async function prepareImagePass(bytes: Buffer, r: GenerationRequest, maxPixels: number): Promise<JobInputs> {
  const open = () => sharp(bytes, { limitInputPixels: maxPixels });
  let image: Buffer;
  try {
    image = await open()
      .rotate()
      .flatten({ background: FILL })
      .resize(r.width, r.height, { fit: 'fill', kernel: 'lanczos3' })
      .png()
      .toBuffer();
  } catch (err) {
    if (/pixel limit/i.test(String(err)))
      throw refuse(`the source image is larger than ${Number((maxPixels / 1e6).toFixed(1))} megapixels.`);
    throw refuse('the source image could not be read.');
  }
  if (r.kind !== 'upscale') return { image };
  const meta = await open().metadata();
  // Sent as it is, unless an EXIF rotation would make an upscaler see it sideways.
  if ((meta.orientation ?? 1) === 1) return { image, source: { image: bytes, width: meta.width, height: meta.height } };
  const upright = await open().rotate().png().toBuffer({ resolveWithObject: true });
  return { image, source: { image: upright.data, width: upright.info.width, height: upright.info.height } };
}
