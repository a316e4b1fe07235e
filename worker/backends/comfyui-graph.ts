import { type GenerationRequest, strengthOf } from '../../core/generation.js';
import { isImagePass } from './backend.js';

/** A ComfyUI API-format graph: node id → { class_type, inputs }; links are `[nodeId, outputIndex]`. */
export type ComfyGraph = Record<string, { class_type: string; inputs: Record<string, unknown> }>;

/** The SaveImage node whose outputs hold the results. */
export const SAVE_NODE = '9';
/** The KSampler node (its steps drive progress). */
const SAMPLER_NODE = '3';

/** Good SDXL quality at 25-30 steps unless the preset names others; both are in every ComfyUI's KSampler lists. */
export const COMFY_SAMPLER = 'dpmpp_2m';
export const COMFY_SCHEDULER = 'karras';

/** What one job runs with on the server: the preset resolved. */
export interface ComfyRun {
  checkpoint: string;
  steps: number;
  guidance: number;
  sampler: string;
  scheduler: string;
}
export const FILENAME_PREFIX = 'imagebot';

/** Names of the uploaded inputs as ComfyUI returned them (`subfolder/name` when in a subfolder); a mask only for inpaint. */
export interface UploadedInputs {
  image: string;
  mask?: string;
}

/**
 * The SDXL graph for a job. txt2img: EmptyLatentImage with batch_size = count. Inpaint: LoadImage +
 * LoadImageMask (red channel, white = repaint) into InpaintModelConditioning with noise_mask, so a
 * denoise below 1 keeps the original under the mask; RepeatLatentBatch makes `count` variations.
 * img2img and upscale: LoadImage → VAEEncode → KSampler with denoise = strength; the uploaded image
 * already has the target size, so an upscale is the same graph on a larger image.
 */
export function buildGraph(r: GenerationRequest, runOrCheckpoint: ComfyRun | string, uploaded?: UploadedInputs): ComfyGraph {
  const run: ComfyRun =
    typeof runOrCheckpoint === 'string'
      ? { checkpoint: runOrCheckpoint, steps: r.steps, guidance: r.guidance, sampler: COMFY_SAMPLER, scheduler: COMFY_SCHEDULER }
      : runOrCheckpoint;
  const g: ComfyGraph = {
    '4': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: run.checkpoint } },
    '6': { class_type: 'CLIPTextEncode', inputs: { text: r.prompt, clip: ['4', 1] } },
    '7': { class_type: 'CLIPTextEncode', inputs: { text: r.negative, clip: ['4', 1] } },
    '8': { class_type: 'VAEDecode', inputs: { samples: [SAMPLER_NODE, 0], vae: ['4', 2] } },
    [SAVE_NODE]: { class_type: 'SaveImage', inputs: { images: ['8', 0], filename_prefix: FILENAME_PREFIX } },
  };
  const sampler = {
    model: ['4', 0],
    seed: r.seed,
    steps: run.steps,
    cfg: run.guidance,
    sampler_name: run.sampler,
    scheduler: run.scheduler,
  };
  if (r.kind === 'inpaint') {
    if (!uploaded?.mask) throw new Error('an inpaint graph needs the uploaded image and mask');
    g['10'] = { class_type: 'LoadImage', inputs: { image: uploaded.image } };
    g['11'] = { class_type: 'LoadImageMask', inputs: { image: uploaded.mask, channel: 'red' } };
    g['12'] = {
      class_type: 'InpaintModelConditioning',
      inputs: { positive: ['6', 0], negative: ['7', 0], vae: ['4', 2], pixels: ['10', 0], mask: ['11', 0], noise_mask: true },
    };
    let latent: [string, number] = ['12', 2];
    if (r.count > 1) {
      g['13'] = { class_type: 'RepeatLatentBatch', inputs: { samples: ['12', 2], amount: r.count } };
      latent = ['13', 0];
    }
    g[SAMPLER_NODE] = {
      class_type: 'KSampler',
      inputs: { ...sampler, positive: ['12', 0], negative: ['12', 1], latent_image: latent, denoise: strengthOf(r) },
    };
  } else if (isImagePass(r.kind)) {
    if (!uploaded) throw new Error(`an ${r.kind} graph needs the uploaded image`);
    g['10'] = { class_type: 'LoadImage', inputs: { image: uploaded.image } };
    g['12'] = { class_type: 'VAEEncode', inputs: { pixels: ['10', 0], vae: ['4', 2] } };
    let latent: [string, number] = ['12', 0];
    if (r.count > 1) {
      g['13'] = { class_type: 'RepeatLatentBatch', inputs: { samples: ['12', 0], amount: r.count } };
      latent = ['13', 0];
    }
    g[SAMPLER_NODE] = {
      class_type: 'KSampler',
      inputs: { ...sampler, positive: ['6', 0], negative: ['7', 0], latent_image: latent, denoise: strengthOf(r) },
    };
  } else {
    g['5'] = { class_type: 'EmptyLatentImage', inputs: { width: r.width, height: r.height, batch_size: r.count } };
    g[SAMPLER_NODE] = {
      class_type: 'KSampler',
      inputs: { ...sampler, positive: ['6', 0], negative: ['7', 0], latent_image: ['5', 0], denoise: 1 },
    };
  }
  return g;
}
