import { isBoxFamily } from '../core/backend-families.js';
import type { GenerationRequest } from '../core/generation.js';
import type { PresetCatalog } from '../core/presets.js';
import { estimateUsdPerImage, type PriceModel } from '../core/pricing.js';
import type { BackendJob, ImageBackend, RunSettings } from './backends/backend.js';

/** Seconds an image takes before any has been made here: SDXL at 30 steps on a cloud GPU, or a mid-range box. */
const FIRST_GUESS_S = { cloud: 5, box: 10 } as const;

/**
 * What a job should cost on a backend before it runs: the price a member sees first, and the budget
 * an attempt asks for. Per-image prices are exact; time-billed ones use how long images took on
 * that backend lately (a moving average over this worker's runs).
 */
export class PriceEstimates {
  private readonly secondsPerImage = new Map<string, number>();

  constructor(private readonly prices: PriceModel) {}

  /** An attempt finished: how long its images took. */
  observe(backendId: string, billedSeconds: number, images: number): void {
    if (!(images >= 1) || !(billedSeconds >= 0)) return;
    const s = billedSeconds / images;
    const prev = this.secondsPerImage.get(backendId);
    this.secondsPerImage.set(backendId, prev === undefined ? s : prev * 0.8 + s * 0.2);
  }

  perImage(backend: ImageBackend, settings: RunSettings): number {
    const secondsPerImage = this.secondsPerImage.get(backend.id) ?? (isBoxFamily(backend.family) ? FIRST_GUESS_S.box : FIRST_GUESS_S.cloud);
    const usdPerImage = backend.usdPerImage?.(settings);
    return estimateUsdPerImage(this.prices, backend.family, { secondsPerImage, ...(usdPerImage !== undefined ? { usdPerImage } : {}) });
  }

  /** About what the job would cost there. */
  job(backend: ImageBackend, job: BackendJob): number {
    const s = job.settings ?? backend.settingsFor(job.request);
    if ('refused' in s) return 0;
    return this.perImage(backend, s) * job.request.count;
  }

  /** The presets a backend runs, each with about what one image costs there (the status report's `presets`). */
  presetPrices(backend: ImageBackend, presets: PresetCatalog): Record<string, number> {
    const out: Record<string, number> = {};
    for (const p of presets.list) {
      const s = backend.settingsFor(probeRequest(p.id));
      if (!('refused' in s)) out[p.id] = Math.round(this.perImage(backend, s) * 1e6) / 1e6;
    }
    return out;
  }
}

/** A plain one-image text-to-image job with a preset's defaults, to ask a backend whether it runs the preset. */
function probeRequest(preset: string): GenerationRequest {
  return {
    kind: 'txt2img',
    prompt: 'preset check',
    negative: '',
    width: 1024,
    height: 1024,
    count: 1,
    seed: 0,
    steps: 30,
    guidance: 7,
    preset,
    replicateModel: 'sdxl',
  };
}
