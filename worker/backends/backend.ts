import type { BackendFamily } from '../../core/backend-families.js';
import { BackendError, type BilledUsage } from '../../core/errors.js';
import type { GenerationRequest, JobKind, ModelLineage } from '../../core/generation.js';
import { type FamilySettings, type PresetCatalog, presetRun } from '../../core/presets.js';

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
  /** The job's preset on this backend (the chain resolves it); absent, the backend resolves it itself. */
  readonly settings?: RunSettings;
}

/**
 * What a backend runs a job with: the job's preset resolved for this backend (its model, steps,
 * guidance and sampler), the member's steps and guidance on top.
 */
export interface RunSettings {
  readonly steps: number;
  readonly guidance: number;
  /** The preset's entry for this family (checkpoint, model, version, sampler…). */
  readonly preset: FamilySettings;
}

/**
 * The settings of a job a backend is handed directly, without the chain (tests, doctor): the
 * preset's when this backend runs it, else the request's own steps and guidance with the backend's
 * defaults.
 */
export function ownSettings(settingsFor: ImageBackend['settingsFor'], r: GenerationRequest): RunSettings {
  const s = settingsFor(r);
  return 'refused' in s ? { steps: r.steps, guidance: r.guidance, preset: {} } : s;
}

/** The job's preset on `family`, or why the preset does not run there. */
export function presetSettings(presets: PresetCatalog, family: BackendFamily, r: GenerationRequest): RunSettings | { refused: string } {
  const preset = presets.find(r.preset);
  if (!preset) return { refused: `unknown preset "${r.preset}"` };
  const run = presetRun(preset, family, {
    ...(r.memberSteps !== undefined ? { steps: r.memberSteps } : {}),
    ...(r.memberGuidance !== undefined ? { guidance: r.memberGuidance } : {}),
  });
  if (!run) return { refused: `preset "${preset.id}" does not run on ${family}` };
  return { steps: run.steps, guidance: run.guidance, preset: run.settings };
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
  /** Billed per image at this price (Replicate's official models) rather than by time. */
  readonly usdPerImage?: number;
  /** The model the images came from, as the backend reported it. */
  readonly model?: ModelLineage;
  /** The sampler (and schedule) that ran. */
  readonly sampler?: string;
  /** The steps that ran (a preset's model may cap the member's); absent where there are none (an extras upscale). */
  readonly steps?: number;
  /** The guidance that ran; null when the model takes none. */
  readonly guidance?: number | null;
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
  /**
   * Aborted when the job is cancelled, times out, the worker shuts down or the box's lease is lost;
   * the backend must stop remote work (but see `lease`: a lost box is never touched again).
   */
  readonly signal: AbortSignal;
  readonly onProgress: (p: BackendProgress) => void;
  /**
   * The box's lease, on a GPU box shared by several workers: asked immediately before every request
   * to the box (generation, progress poll, interrupt). false means another job holds the box now:
   * send it nothing more, not even an interrupt.
   */
  readonly lease?: {
    holds(): Promise<boolean>;
    /**
     * true, once per lease, when the box was handed over cleanly a moment ago (the previous job's
     * box had answered): nothing of ours runs there, so the idle check before the first request
     * may be skipped. Later requests under the same lease (a retry after a failure) check again.
     */
    takeKnownIdle?(): boolean;
  };
  /**
   * A paid provider billing by run time: the most seconds the budget set aside for this attempt.
   * The backend cancels the run before it bills more (and says what it billed).
   */
  readonly maxBilledSeconds?: number;
  /**
   * A paid run started at the provider under this id (a Replicate prediction): called as soon as
   * the id is known, before the run is polled, and awaited, so that if this worker dies the job's
   * next try finds the run, stops it and books what it billed (see `reclaim`).
   */
  readonly onRemoteRun?: (ref: string, o: { usdPerImage?: number }) => Promise<void>;
}

/** What a paid run another worker left behind billed, once it is stopped. */
export interface ReclaimedRun {
  billed: BilledUsage;
  /** It was still running and this call cancelled it. */
  cancelled: boolean;
  /** Its state at the provider when it was found (`processing`, `succeeded`, …). */
  status: string;
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
  /** Jobs running on it right now, or waiting for it, in this process. */
  readonly inFlight: number;
  /** A GPU box: its identity from its normalised URL, shared by every worker configured with it. */
  readonly box?: { readonly id: string };
  /**
   * Whether it answers and can take a job. `circuitOpen`: asked by a health probe about a backend
   * taken for broken (no job is sent it meanwhile), which a box may answer more strictly.
   */
  health(signal?: AbortSignal, o?: { circuitOpen?: boolean }): Promise<HealthStatus>;
  /** The job's settings here, or why this backend does not run the job's preset. */
  settingsFor(request: GenerationRequest): RunSettings | { refused: string };
  /** When the provider bills these settings per image (not by time): the price of one. */
  usdPerImage?(settings: RunSettings): number | undefined;
  generate(job: BackendJob, ctx: RunContext): Promise<BackendOutput>;
  /**
   * A paid run this backend started for a job whose worker died (its id from `onRemoteRun`):
   * cancels it if it still runs and says what it billed. Throws a BackendError when the provider
   * cannot be asked.
   */
  reclaim?(ref: string, o: { usdPerImage?: number; signal?: AbortSignal }): Promise<ReclaimedRun>;
}

/**
 * The errors a backend raises about itself, made in one place. `badResponseRetryable`: whether an
 * answer that makes no sense is worth a second try on the same backend (a GPU box: yes, it costs
 * nothing; a paid provider: no, the next backend is a better bet than paying twice).
 */
export function backendErrors(id: string, o: { badResponseRetryable: boolean }) {
  return {
    /** Another job holds the box now: this one must leave it alone and go elsewhere. */
    leaseLost: () => new BackendError(id, 'busy', 'lost the lease on the box to another job', { retryable: false }),
    cancelled: (detail = 'cancelled', cause?: unknown) => new BackendError(id, 'cancelled', detail, { retryable: false, cause }),
    badResponse: (detail: string, cause?: unknown) =>
      new BackendError(id, 'bad-response', detail, { retryable: o.badResponseRetryable, cause }),
    rejected: (detail: string, cause?: unknown) => new BackendError(id, 'rejected', detail, { retryable: false, cause }),
  };
}
export type BackendErrors = ReturnType<typeof backendErrors>;
