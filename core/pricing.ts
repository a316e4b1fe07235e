import type { BackendFamily } from './backend-families.js';
import type { Attempt } from './generation.js';
import type { SettleOutcome } from './settle.js';

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
  /** Billed per image at this price (Replicate official models) instead of by time. */
  usdPerImage?: number;
  /** Replicate, older results: FLUX schnell was billed per image at replicateFluxUsdPerImage. */
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
    case 'replicate': {
      const perImage = u.usdPerImage ?? (u.replicateModel === 'flux-schnell' ? model.replicateFluxUsdPerImage : undefined);
      usd = perImage !== undefined ? perImage * u.billedImages : model.replicateUsdPerSecond * u.billedSeconds;
      break;
    }
    case 'huggingface':
      usd = model.hfUsdPerRequest * u.billedImages + (model.hfUsdPerEndpointHour * u.billedSeconds) / 3600;
      break;
  }
  return Math.round(usd * 1e6) / 1e6;
}

/**
 * Rule: what one image should cost on a backend before it runs (for the price a member sees first,
 * and the budget an attempt may need): a per-image price where the provider bills per image, else
 * the typical seconds an image takes there at the per-second or per-hour price.
 */
export function estimateUsdPerImage(
  model: PriceModel,
  family: BackendFamily,
  o: { usdPerImage?: number; secondsPerImage: number },
): number {
  return priceAttempt(model, {
    family,
    billedSeconds: o.secondsPerImage,
    billedImages: 1,
    ...(o.usdPerImage !== undefined ? { usdPerImage: o.usdPerImage } : {}),
  });
}

/**
 * Rule: the run time `usd` buys on a backend billed by time (Replicate's community models), the cap
 * on a paid attempt's run; undefined where the price does not grow with time (per-image prices,
 * per-request providers, the owner's own boxes).
 */
export function secondsFor(model: PriceModel, family: BackendFamily, usd: number, usdPerImage: number | undefined): number | undefined {
  if (family !== 'replicate' || usdPerImage !== undefined || !(model.replicateUsdPerSecond > 0)) return undefined;
  return usd / model.replicateUsdPerSecond;
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

/**
 * Rule: a job that ran on its guild's own box costs the operator nothing and never counts against
 * the guild's paid budget; each attempt there is booked at the guild's own GPU-hour price instead
 * (`ownUsd`, 0 when the guild set none).
 */
export function bookOnOwnBox(outcome: SettleOutcome, usdPerGpuHour: number | null): SettleOutcome {
  const rate = usdPerGpuHour ?? 0;
  const book = (attempts: readonly Attempt[]): Attempt[] =>
    attempts.map((a) => ({
      ...a,
      costUsd: 0,
      ownUsd: a.outcome === 'skipped' ? 0 : Math.round(((a.seconds * rate) / 3600) * 1e6) / 1e6,
    }));
  if (outcome.status === 'succeeded')
    return { ...outcome, result: { ...outcome.result, costUsd: 0, attempts: book(outcome.result.attempts) } };
  return { ...outcome, attempts: book(outcome.attempts) };
}
