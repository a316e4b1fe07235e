import type { BackendFamily } from '../../core/backend-families.js';
import { BackendError } from '../../core/errors.js';
import type { GenerationRequest, JobKind } from '../../core/generation.js';

/** What a backend can do; the chain only sends a job to a backend whose capabilities cover it. */
export interface BackendCapabilities {
  readonly kinds: readonly JobKind[];
  /** Largest width × height it accepts. */
  readonly maxPixels: number;
  /** Tighter limits for some kinds (e.g. an image input a provider only takes up to some size). */
  readonly maxPixelsByKind?: Readonly<Partial<Record<JobKind, number>>>;
  /** Most images one request may return. */
  readonly maxCount: number;
  readonly negativePrompt: boolean;
  readonly seed: boolean;
  readonly previews: boolean;
  /** Costs the guild money (subject to the monthly budget). */
  readonly paid: boolean;
}

export interface BackendProgress {
  step: number;
  total: number;
  /** 0..1 */
  fraction: number;
  /** Encoded preview image (PNG/JPEG/WebP), when the backend offers one. */
  preview?: Buffer;
}

/** The image an upscale starts from, as the bot parked it (PNG, WebP or JPEG; re-encoded only to undo an EXIF rotation). */
export interface SourceImage {
  readonly image: Buffer;
  readonly width: number;
  readonly height: number;
}

/** Inputs resolved by the processor: input images are loaded from the result store before the call. */
export interface BackendJob {
  readonly jobId: string;
  readonly request: GenerationRequest;
  /**
   * PNG at exactly request.width × request.height. Inpaint: the prepared model-size image.
   * img2img and upscale: the source image resized (lanczos) to that size, the start of an img2img pass.
   */
  readonly image?: Buffer;
  /** Inpaint only: white = repaint, same size as `image`. */
  readonly mask?: Buffer;
  /** Upscale only: the untouched source, for a backend with its own upscaler. */
  readonly source?: SourceImage;
}

/** Kinds that start from `BackendJob.image` without a mask. */
export function isImagePass(kind: JobKind): kind is 'img2img' | 'upscale' {
  return kind === 'img2img' || kind === 'upscale';
}

export interface BackendOutput {
  /** PNG bytes, one per requested image, each request.width × request.height. */
  readonly images: Buffer[];
  /** Seed the backend actually used for the first image. */
  readonly seed: number;
  /** Billable seconds as the provider reports them (Replicate predict_time), else wall time. */
  readonly billedSeconds: number;
  /** Billable images, for per-image prices. */
  readonly billedImages: number;
}

export interface HealthStatus {
  readonly ok: boolean;
  readonly detail: string;
  readonly latencyMs: number;
}

/** Starts timing a health probe; call the result with the verdict to get the status with its latency. */
export function healthReporter(): (ok: boolean, detail: string) => HealthStatus {
  const started = performance.now();
  return (ok, detail) => ({ ok, detail, latencyMs: Math.round(performance.now() - started) });
}

export interface RunContext {
  /** Aborted when the job is cancelled, times out or the worker shuts down; the backend must stop remote work. */
  readonly signal: AbortSignal;
  readonly onProgress: (p: BackendProgress) => void;
}

/**
 * A place that turns a GenerationRequest into images.
 * Errors are BackendError with a kind and a retryable flag; nothing else may escape generate().
 */
export interface ImageBackend {
  /** Stable name for logs, metrics and the ledger, e.g. `a1111` or `a1111#2`. */
  readonly id: string;
  readonly family: BackendFamily;
  readonly capabilities: BackendCapabilities;
  /** Jobs running on it right now (for least-busy routing). */
  readonly inFlight: number;
  health(signal?: AbortSignal): Promise<HealthStatus>;
  generate(job: BackendJob, ctx: RunContext): Promise<BackendOutput>;
}

/**
 * The errors a backend raises about itself, made in one place. `badResponseRetryable`: whether an
 * answer that makes no sense is worth a second try on the same backend (a GPU box: yes, it costs
 * nothing; a paid provider: no, the next backend is a better bet than paying twice).
 */
export function backendErrors(id: string, o: { badResponseRetryable: boolean }) {
  return {
    cancelled: (detail = 'cancelled', cause?: unknown) => new BackendError(id, 'cancelled', detail, { retryable: false, cause }),
    badResponse: (detail: string, cause?: unknown) =>
      new BackendError(id, 'bad-response', detail, { retryable: o.badResponseRetryable, cause }),
    rejected: (detail: string, cause?: unknown) => new BackendError(id, 'rejected', detail, { retryable: false, cause }),
  };
}
export type BackendErrors = ReturnType<typeof backendErrors>;
