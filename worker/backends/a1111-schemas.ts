import { z } from 'zod';
import { type GenerationRequest, strengthOf } from '../../core/generation.js';

/** Sampler and scheduler we ask for unless the preset names others: good SDXL quality at 25-30 steps on every A1111 ≥ 1.9 and Forge. */
export const A1111_SAMPLER = 'DPM++ 2M';
export const A1111_SCHEDULER = 'Karras';

/** What one job runs with on the box: the preset's settings resolved, the checkpoint in force. */
export interface A1111Run {
  steps: number;
  guidance: number;
  sampler: string;
  scheduler: string;
  /** Requested per job through override_settings; undefined keeps the box's loaded model. */
  checkpoint?: string;
}

/** Fields shared by `POST /sdapi/v1/txt2img` and `/img2img` (the subset we send). */
export interface A1111CommonBody {
  prompt: string;
  negative_prompt: string;
  width: number;
  height: number;
  steps: number;
  cfg_scale: number;
  seed: number;
  batch_size: number;
  n_iter: number;
  sampler_name: string;
  scheduler: string;
  send_images: boolean;
  save_images: boolean;
  override_settings?: { sd_model_checkpoint: string };
}

/** `POST /sdapi/v1/img2img` in inpaint use: white mask pixels are repainted. */
export interface A1111InpaintBody extends A1111CommonBody {
  init_images: string[];
  mask: string;
  denoising_strength: number;
  mask_blur: number;
  inpaint_full_res: boolean;
  inpaint_full_res_padding: number;
  /** 1 = start from the original pixels under the mask. */
  inpainting_fill: number;
  resize_mode: number;
}

/** `POST /sdapi/v1/img2img` for a variation or an upscaling pass: no mask, the whole image is redrawn. */
export interface A1111Img2ImgBody extends A1111CommonBody {
  init_images: string[];
  denoising_strength: number;
  /** 0 = just resize; the image already has the request's size. */
  resize_mode: number;
}

/** `POST /sdapi/v1/extra-single-image` (the subset we send). */
export interface A1111ExtrasBody {
  image: string;
  /** 0 = scale by `upscaling_resize` (1-8). */
  resize_mode: number;
  upscaling_resize: number;
  upscaler_1: string;
}

/** The common body for a request; the checkpoint goes through override_settings so no global switch is needed. */
export function commonBody(r: GenerationRequest, run: A1111Run): A1111CommonBody {
  return {
    prompt: r.prompt,
    negative_prompt: r.negative,
    width: r.width,
    height: r.height,
    steps: run.steps,
    cfg_scale: run.guidance,
    seed: r.seed,
    batch_size: r.count,
    n_iter: 1,
    sampler_name: run.sampler,
    scheduler: run.scheduler,
    send_images: true,
    save_images: false,
    ...(run.checkpoint ? { override_settings: { sd_model_checkpoint: run.checkpoint } } : {}),
  };
}

/** The img2img body for an inpaint job from already prepared PNGs. */
export function inpaintBody(r: GenerationRequest, image: Buffer, mask: Buffer, run: A1111Run): A1111InpaintBody {
  return {
    ...commonBody(r, run),
    init_images: [image.toString('base64')],
    mask: mask.toString('base64'),
    denoising_strength: strengthOf(r),
    mask_blur: 4,
    inpaint_full_res: true,
    inpaint_full_res_padding: 32,
    inpainting_fill: 1,
    resize_mode: 0,
  };
}

/** The img2img body for a variation or upscaling pass from a PNG already at the request's size. */
export function img2imgBody(r: GenerationRequest, image: Buffer, strength: number, run: A1111Run): A1111Img2ImgBody {
  return { ...commonBody(r, run), init_images: [image.toString('base64')], denoising_strength: strength, resize_mode: 0 };
}

/** `POST /sdapi/v1/txt2img|img2img` → base64 images (no data-URI prefix) and a JSON-encoded info string. */
export const generationResponseSchema = z.object({
  images: z.array(z.string()),
  parameters: z.record(z.string(), z.unknown()).nullable().optional(),
  info: z.string(),
});

/** The decoded `info` string (Processed.js()); only what we use is required. */
export const generationInfoSchema = z
  .object({
    seed: z.number().int(),
    all_seeds: z.array(z.number()).optional(),
    width: z.number().optional(),
    height: z.number().optional(),
    /** 1 when a grid image was put first (save_images with several images). */
    index_of_first_image: z.number().int().nonnegative().optional(),
    /** The checkpoint that ran and its short hash (lineage). */
    sd_model_name: z.string().nullable().optional(),
    sd_model_hash: z.string().nullable().optional(),
    sampler_name: z.string().nullable().optional(),
    extra_generation_params: z.record(z.string(), z.unknown()).nullable().optional(),
  })
  .loose();

/** `GET /sdapi/v1/progress`: global state of the box, not of one request. */
export const progressSchema = z.object({
  progress: z.number(),
  eta_relative: z.number().nullable().optional(),
  state: z
    .object({
      job: z.string().optional(),
      job_count: z.number().optional(),
      job_no: z.number().optional(),
      job_timestamp: z.string().optional(),
      sampling_step: z.number().optional(),
      sampling_steps: z.number().optional(),
      interrupted: z.boolean().optional(),
      skipped: z.boolean().optional(),
    })
    .loose(),
  current_image: z.string().nullable().optional(),
  textinfo: z.string().nullable().optional(),
});

/** `GET /sdapi/v1/sd-models`. */
export const sdModelsSchema = z.array(z.object({ title: z.string(), model_name: z.string() }).loose());

/** `POST /sdapi/v1/extra-single-image`. */
export const upscaleResponseSchema = z.object({ image: z.string(), html_info: z.string().nullable().optional() });

/** Base64 as A1111 sends it, tolerating a `data:image/...;base64,` prefix. */
export function decodeBase64Image(b64: string): Buffer {
  return Buffer.from(b64.replace(/^data:[^,]*,/, ''), 'base64');
}
