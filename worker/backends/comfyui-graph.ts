import type { GenerationRequest } from '../../core/generation.js';

/** A ComfyUI API-format graph: node id → { class_type, inputs }; links are [nodeId, outputIndex]. */
export type ComfyGraph = Record<string, { class_type: string; inputs: Record<string, unknown> }>;

/** The SaveImage node whose outputs hold the results. */
export const SAVE_NODE = '9';

/** SDXL graph for a job: txt2img from an empty latent, or inpaint on uploaded image and mask files. */
export function buildGraph(r: GenerationRequest, checkpoint: string, uploaded?: { image: string; mask: string }): ComfyGraph {
  const g: ComfyGraph = {
    '4': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: checkpoint } },
    '6': { class_type: 'CLIPTextEncode', inputs: { text: r.prompt, clip: ['4', 1] } },
    '7': { class_type: 'CLIPTextEncode', inputs: { text: r.negative, clip: ['4', 1] } },
    '8': { class_type: 'VAEDecode', inputs: { samples: ['3', 0], vae: ['4', 2] } },
    [SAVE_NODE]: { class_type: 'SaveImage', inputs: { images: ['8', 0], filename_prefix: 'imagebot' } },
  };
  const sampler = { seed: r.seed, steps: r.steps, cfg: r.guidance, sampler_name: 'dpmpp_2m', scheduler: 'karras', model: ['4', 0] };
  if (r.kind === 'inpaint' && uploaded) {
    g['10'] = { class_type: 'LoadImage', inputs: { image: uploaded.image } };
    g['11'] = { class_type: 'LoadImageMask', inputs: { image: uploaded.mask, channel: 'red' } };
    g['12'] = {
      class_type: 'InpaintModelConditioning',
      inputs: { positive: ['6', 0], negative: ['7', 0], vae: ['4', 2], pixels: ['10', 0], mask: ['11', 0], noise_mask: true },
    };
    g['13'] = { class_type: 'RepeatLatentBatch', inputs: { samples: ['12', 2], amount: r.count } };
    g['3'] = { class_type: 'KSampler', inputs: { ...sampler, positive: ['12', 0], negative: ['12', 1], latent_image: ['13', 0], denoise: r.strength ?? 0.75 } };
  } else {
    g['5'] = { class_type: 'EmptyLatentImage', inputs: { width: r.width, height: r.height, batch_size: r.count } };
    g['3'] = { class_type: 'KSampler', inputs: { ...sampler, positive: ['6', 0], negative: ['7', 0], latent_image: ['5', 0], denoise: 1 } };
  }
  return g;
}
