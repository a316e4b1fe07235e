import type { BackendFamily } from './backend-families.js';

/**
 * Price of one backend attempt, from the per-backend price model in config.
 * GPU boxes cost $/GPU-hour of wall time (default 0: the owner's own hardware);
 * Replicate bills predict_time per second for community models and per image for official ones;
 * Hugging Face bills per request (Inference Providers) or a share of endpoint-hours.
 */
export interface PriceModel {
  a1111UsdPerGpuHour: number;
  comfyuiUsdPerGpuHour: number;
  replicateUsdPerSecond: number;
  replicateFluxUsdPerImage: number;
  hfUsdPerRequest: number;
  hfUsdPerEndpointHour: number;
}

export interface AttemptUsage {
  family: BackendFamily;
  billedSeconds: number;
  billedImages: number;
  /** Replicate only: which model ran. */
  replicateModel?: 'sdxl' | 'flux-schnell';
}

/** Dollars, rounded to the micro-dollar the ledger stores. */
export function priceAttempt(model: PriceModel, u: AttemptUsage): number {
  let usd: number;
  switch (u.family) {
    case 'a1111':
      usd = (model.a1111UsdPerGpuHour * u.billedSeconds) / 3600;
      break;
    case 'comfyui':
      usd = (model.comfyuiUsdPerGpuHour * u.billedSeconds) / 3600;
      break;
    case 'replicate':
      usd =
        u.replicateModel === 'flux-schnell'
          ? model.replicateFluxUsdPerImage * u.billedImages
          : model.replicateUsdPerSecond * u.billedSeconds;
      break;
    case 'huggingface':
      usd = model.hfUsdPerRequest * u.billedImages + (model.hfUsdPerEndpointHour * u.billedSeconds) / 3600;
      break;
  }
  return Math.round(usd * 1e6) / 1e6;
}

/** A short human description of a backend's price, for /admin backends. */
export function describePrice(model: PriceModel, family: AttemptUsage['family']): string {
  switch (family) {
    case 'a1111':
      return model.a1111UsdPerGpuHour > 0 ? `$${model.a1111UsdPerGpuHour}/GPU-hour` : 'free (own GPU)';
    case 'comfyui':
      return model.comfyuiUsdPerGpuHour > 0 ? `$${model.comfyuiUsdPerGpuHour}/GPU-hour` : 'free (own GPU)';
    case 'replicate':
      return `$${model.replicateUsdPerSecond}/s (SDXL), $${model.replicateFluxUsdPerImage}/image (FLUX schnell)`;
    case 'huggingface':
      return (
        [
          model.hfUsdPerRequest > 0 ? `$${model.hfUsdPerRequest}/image` : '',
          model.hfUsdPerEndpointHour > 0 ? `$${model.hfUsdPerEndpointHour}/endpoint-hour` : '',
        ]
          .filter(Boolean)
          .join(' + ') || 'free'
      );
  }
}
