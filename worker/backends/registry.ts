import type { WorkerConfig } from '../../core/config.js';
import type { Logger } from '../../core/io/logger.js';
import type { ImageBackend } from './backend.js';

/**
 * Builds the backends named in BACKENDS, in that order; A1111_URL may list several boxes.
 * Each family's module (and its client library: ws, replicate, @huggingface/inference) is loaded
 * only when configured, so a worker for one GPU box does not carry the cloud clients in memory.
 */
export async function createBackends(config: WorkerConfig, log: Logger): Promise<ImageBackend[]> {
  const out: ImageBackend[] = [];
  for (const name of config.BACKENDS) {
    switch (name) {
      case 'a1111': {
        const { createA1111Backend } = await import('./a1111.js');
        config.A1111_URL.forEach((url, i) => {
          const id = config.A1111_URL.length > 1 ? `a1111#${i + 1}` : 'a1111';
          out.push(
            createA1111Backend({
              id,
              url,
              auth: config.A1111_AUTH,
              checkpoint: config.A1111_CHECKPOINT,
              upscaler: config.A1111_UPSCALER,
              pollIntervalMs: config.PROGRESS_POLL_MS,
              progressTimeoutMs: config.PROGRESS_TIMEOUT_MS,
              log: log.child({ backend: id }),
            }),
          );
        });
        break;
      }
      case 'comfyui': {
        const { createComfyUIBackend } = await import('./comfyui.js');
        out.push(
          createComfyUIBackend({
            id: 'comfyui',
            url: config.COMFYUI_URL!,
            checkpoint: config.COMFYUI_CHECKPOINT,
            progressTimeoutMs: config.PROGRESS_TIMEOUT_MS,
            log: log.child({ backend: 'comfyui' }),
          }),
        );
        break;
      }
      case 'replicate': {
        const { createReplicateBackend, DEFAULT_SDXL_VERSION } = await import('./replicate.js');
        out.push(
          createReplicateBackend({
            id: 'replicate',
            token: config.REPLICATE_API_TOKEN!,
            baseUrl: config.REPLICATE_API_URL,
            sdxlVersion: config.REPLICATE_SDXL_VERSION ?? DEFAULT_SDXL_VERSION,
            log: log.child({ backend: 'replicate' }),
          }),
        );
        break;
      }
      case 'huggingface': {
        const { createHuggingFaceBackend } = await import('./huggingface.js');
        out.push(
          createHuggingFaceBackend({
            id: 'huggingface',
            token: config.HF_TOKEN,
            endpointUrl: config.HF_ENDPOINT_URL,
            model: config.HF_MODEL,
            inpaint: config.HF_INPAINT,
            log: log.child({ backend: 'huggingface' }),
          }),
        );
        break;
      }
      default:
        log.warn({ backend: name }, 'backend not available in this build; skipped');
    }
  }
  return out;
}
