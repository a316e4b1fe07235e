import type { BackendFamily } from '../../core/backend-families.js';
import type { WorkerConfig } from '../../core/config.js';
import type { Logger } from '../../core/io/logger.js';
import { BUILTIN_PRESETS, type PresetCatalog } from '../../core/presets.js';
import { boxIdOf, normalizeBoxUrl } from '../boxes/identity.js';
import type { ImageBackend } from './backend.js';

type Factory = (config: WorkerConfig, log: Logger, presets: PresetCatalog) => Promise<ImageBackend[]>;

/**
 * One entry per distinct box in a list of URLs (the same box twice is one box), named for logs and
 * the ledger: `a1111`, or `a1111#1`, `a1111#2`… when there are several. The name is only this
 * worker's; the box's identity (its lease, its shared circuit) comes from its URL.
 */
function boxesOf(family: string, urls: readonly string[]): { id: string; url: string; boxId: string }[] {
  const seen = new Set<string>();
  const distinct = urls.filter((u) => {
    const n = normalizeBoxUrl(u);
    if (seen.has(n)) return false;
    seen.add(n);
    return true;
  });
  return distinct.map((url, i) => ({ id: distinct.length > 1 ? `${family}#${i + 1}` : family, url, boxId: boxIdOf(url) }));
}

/**
 * How each family is built from the configuration. Each family's module (and its client library:
 * ws, replicate, @huggingface/inference) is loaded only when configured, so a worker for one GPU box
 * does not carry the cloud clients in memory. A family without an entry here does not compile.
 */
const FACTORIES = {
  async a1111(config, log, presets) {
    const { createA1111Backend } = await import('./a1111.js');
    return boxesOf('a1111', config.A1111_URL).map(({ id, url, boxId }) =>
      createA1111Backend({
        id,
        url,
        boxId,
        presets,
        auth: config.A1111_AUTH,
        checkpoint: config.A1111_CHECKPOINT,
        upscaler: config.A1111_UPSCALER,
        pollIntervalMs: config.PROGRESS_POLL_MS,
        progressTimeoutMs: config.PROGRESS_TIMEOUT_MS,
        deadAfterMs: config.BOX_DEAD_AFTER_MS,
        log: log.child({ backend: id }),
      }),
    );
  },
  async comfyui(config, log, presets) {
    const { createComfyUIBackend } = await import('./comfyui.js');
    return boxesOf('comfyui', config.COMFYUI_URL).map(({ id, url, boxId }) =>
      createComfyUIBackend({
        id,
        url,
        boxId,
        presets,
        checkpoint: config.COMFYUI_CHECKPOINT,
        progressTimeoutMs: config.PROGRESS_TIMEOUT_MS,
        deadAfterMs: config.BOX_DEAD_AFTER_MS,
        pollIntervalMs: config.PROGRESS_POLL_MS,
        log: log.child({ backend: id }),
      }),
    );
  },
  async replicate(config, log, presets) {
    const { createReplicateBackend, DEFAULT_SDXL_VERSION } = await import('./replicate.js');
    return [
      createReplicateBackend({
        id: 'replicate',
        token: config.REPLICATE_API_TOKEN!,
        baseUrl: config.REPLICATE_API_URL,
        sdxlVersion: config.REPLICATE_SDXL_VERSION ?? DEFAULT_SDXL_VERSION,
        officialUsdPerImage: config.REPLICATE_FLUX_USD_PER_IMAGE,
        outputOrigins: config.REPLICATE_OUTPUT_ORIGINS,
        presets,
        log: log.child({ backend: 'replicate' }),
      }),
    ];
  },
  async huggingface(config, log, presets) {
    const { createHuggingFaceBackend } = await import('./huggingface.js');
    return [
      createHuggingFaceBackend({
        id: 'huggingface',
        token: config.HF_TOKEN,
        endpointUrl: config.HF_ENDPOINT_URL,
        outputOrigins: config.HF_OUTPUT_ORIGINS,
        model: config.HF_MODEL,
        inpaint: config.HF_INPAINT,
        presets,
        log: log.child({ backend: 'huggingface' }),
      }),
    ];
  },
} satisfies Record<BackendFamily, Factory>;

/** Builds the backends named in BACKENDS, in that order; A1111_URL and COMFYUI_URL may list several boxes. */
export async function createBackends(config: WorkerConfig, log: Logger, presets: PresetCatalog = BUILTIN_PRESETS): Promise<ImageBackend[]> {
  const out: ImageBackend[] = [];
  for (const family of config.BACKENDS) out.push(...(await FACTORIES[family](config, log, presets)));
  return out;
}
