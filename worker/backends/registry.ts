import type { BackendFamily } from '../../core/backend-families.js';
import type { WorkerConfig } from '../../core/config.js';
import type { Logger } from '../../core/io/logger.js';
import type { ImageBackend } from './backend.js';

type Factory = (config: WorkerConfig, log: Logger) => Promise<ImageBackend[]>;

/**
 * How each family is built from the configuration. Each family's module (and its client library:
 * ws, replicate, @huggingface/inference) is loaded only when configured, so a worker for one GPU box
 * does not carry the cloud clients in memory. A family without an entry here does not compile.
 */
const FACTORIES = {
  async a1111(config, log) {
    const { createA1111Backend } = await import('./a1111.js');
    return config.A1111_URL.map((url, i) => {
      const id = config.A1111_URL.length > 1 ? `a1111#${i + 1}` : 'a1111';
      return createA1111Backend({
        id,
        url,
        auth: config.A1111_AUTH,
        checkpoint: config.A1111_CHECKPOINT,
        upscaler: config.A1111_UPSCALER,
        pollIntervalMs: config.PROGRESS_POLL_MS,
        progressTimeoutMs: config.PROGRESS_TIMEOUT_MS,
        log: log.child({ backend: id }),
      });
    });
  },
  async comfyui(config, log) {
    const { createComfyUIBackend } = await import('./comfyui.js');
    return [
      createComfyUIBackend({
        id: 'comfyui',
        url: config.COMFYUI_URL!,
        checkpoint: config.COMFYUI_CHECKPOINT,
        progressTimeoutMs: config.PROGRESS_TIMEOUT_MS,
        log: log.child({ backend: 'comfyui' }),
      }),
    ];
  },
  async replicate(config, log) {
    const { createReplicateBackend, DEFAULT_SDXL_VERSION } = await import('./replicate.js');
    return [
      createReplicateBackend({
        id: 'replicate',
        token: config.REPLICATE_API_TOKEN!,
        baseUrl: config.REPLICATE_API_URL,
        sdxlVersion: config.REPLICATE_SDXL_VERSION ?? DEFAULT_SDXL_VERSION,
        log: log.child({ backend: 'replicate' }),
      }),
    ];
  },
  async huggingface(config, log) {
    const { createHuggingFaceBackend } = await import('./huggingface.js');
    return [
      createHuggingFaceBackend({
        id: 'huggingface',
        token: config.HF_TOKEN,
        endpointUrl: config.HF_ENDPOINT_URL,
        model: config.HF_MODEL,
        inpaint: config.HF_INPAINT,
        log: log.child({ backend: 'huggingface' }),
      }),
    ];
  },
} satisfies Record<BackendFamily, Factory>;

/** Builds the backends named in BACKENDS, in that order; A1111_URL may list several boxes. */
export async function createBackends(config: WorkerConfig, log: Logger): Promise<ImageBackend[]> {
  const out: ImageBackend[] = [];
  for (const family of config.BACKENDS) out.push(...(await FACTORIES[family](config, log)));
  return out;
}
