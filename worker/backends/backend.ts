import type { GenerationRequest } from '../../core/generation.js';

/** What a backend can do; the chain only sends a job to a backend whose capabilities cover it. */
export interface BackendCapabilities {
  readonly kinds: readonly GenerationRequest['kind'][];
  /** Largest width × height it accepts. */
  readonly maxPixels: number;
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

/** Inputs resolved by the processor: inpaint images are loaded from the result store before the call. */
export interface BackendJob {
  readonly jobId: string;
  readonly request: GenerationRequest;
  /** Inpaint only: prepared PNGs, same size as request.width × request.height. */
  readonly image?: Buffer;
  readonly mask?: Buffer;
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
  readonly family: 'a1111' | 'comfyui' | 'replicate' | 'huggingface';
  readonly capabilities: BackendCapabilities;
  /** Jobs running on it right now (for least-busy routing). */
  readonly inFlight: number;
  health(signal?: AbortSignal): Promise<HealthStatus>;
  generate(job: BackendJob, ctx: RunContext): Promise<BackendOutput>;
}
