import Replicate, { type Prediction, parseProgressFromLogs } from 'replicate';
import { BackendError, isBackendError, isUserError } from '../../core/errors.js';
import type { GenerationRequest } from '../../core/generation.js';
import { OUTPUT_LIMITS } from '../../core/image-limits.js';
import { fetchAttachment } from '../../core/io/attachments.js';
import type { Logger } from '../../core/io/logger.js';
import { BUILTIN_PRESETS, type PresetCatalog } from '../../core/presets.js';
import type { BackendJob, BackendOutput, HealthStatus, ImageBackend, ReclaimedRun, RunContext, RunSettings } from './backend.js';
import { backendErrors, healthReporter, ownSettings, presetSettings } from './backend.js';
import { outputPng } from './output-image.js';
import {
  buildPrediction,
  mapReplicateError,
  type PredictionSpec,
  parseRetryAfter,
  REPLICATE_IMAGE_INPUT_MAX_PIXELS,
} from './replicate-input.js';

export { DEFAULT_SDXL_VERSION, REPLICATE_IMAGE_INPUT_MAX_PIXELS } from './replicate-input.js';

/** Settings for one Replicate account. */
export interface ReplicateBackendOptions {
  id: string;
  token: string;
  /** API base including `/v1`, e.g. `https://api.replicate.com/v1`. */
  baseUrl: string;
  /** 64-hex version id of `stability-ai/sdxl`. */
  sdxlVersion: string;
  /** `Prefer: wait=N` on create (default 5: a cancel waits this long at most for the id it cancels); 0 only polls. */
  waitSeconds?: number;
  /** Poll interval while a prediction runs (default 500 ms). */
  pollIntervalMs?: number;
  /** Per-request timeout (default 30 s); the held create gets waitSeconds on top. */
  requestTimeoutMs?: number;
  /** Presets in force (default the built-ins). */
  presets?: PresetCatalog;
  /** Price per image of official models (billed per image) that name none in their preset (REPLICATE_FLUX_USD_PER_IMAGE). */
  officialUsdPerImage?: number;
  /**
   * Origins output files may be fetched from (REPLICATE_OUTPUT_ORIGINS), redirects included: any
   * other URL a prediction names is refused without being contacted.
   */
  outputOrigins: readonly string[];
  /** Byte cap on one output file (default {@link OUTPUT_LIMITS}). */
  outputMaxBytes?: number;
  log: Logger;
}

type FetchFn = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

/** Time a cancel takes to reach Replicate, within which the run still bills. */
export const REPLICATE_CANCEL_MARGIN_MS = 250;
/** How often a running prediction is polled, unless told otherwise. */
export const REPLICATE_POLL_MS = 500;

const TERMINAL = new Set(['succeeded', 'failed', 'canceled', 'aborted']);

/** A plain text-to-image job, to ask which model and billing a preset's settings come to. */
const PRICE_PROBE: GenerationRequest = {
  kind: 'txt2img',
  prompt: 'price',
  negative: '',
  width: 1024,
  height: 1024,
  count: 1,
  seed: 0,
  steps: 30,
  guidance: 7,
  preset: 'sdxl',
  replicateModel: 'sdxl',
};

/**
 * Fetch for the Replicate client: applies the job signal and a timeout, maps network failures to
 * BackendError, and turns a 429 into 'busy' with `retryAfterS`. The client would otherwise retry a
 * 429 (and any thrown error) five times back-to-back, ignoring Retry-After; a failure is therefore
 * remembered per request init and re-thrown to those retries without touching the network again.
 */
function guardedFetch(backend: string, timeoutMs: number, jobSignal?: AbortSignal): FetchFn {
  const failures = new WeakMap<object, BackendError>();
  return async (input, init) => {
    const prior = init && failures.get(init);
    if (prior) throw prior;
    const timeout = AbortSignal.timeout(timeoutMs);
    const signals = [timeout, jobSignal, init?.signal].filter((s): s is AbortSignal => s != null);
    try {
      const res = await fetch(input, { ...init, signal: AbortSignal.any(signals) });
      if (res.status === 429) {
        const body = await res.text().catch(() => '');
        throw new BackendError(backend, 'busy', `Replicate rate limit (429): ${body.slice(0, 200)}`, {
          status: 429,
          retryAfterS: parseRetryAfter(res.headers.get('retry-after'), body),
        });
      }
      return res;
    } catch (err) {
      const mapped = isBackendError(err)
        ? err
        : jobSignal?.aborted
          ? new BackendError(backend, 'cancelled', 'cancelled', { cause: err })
          : timeout.aborted
            ? new BackendError(backend, 'timeout', `no answer from Replicate within ${timeoutMs} ms`, { cause: err })
            : new BackendError(backend, 'unavailable', `cannot reach Replicate: ${(err as Error).message}`, { cause: err });
      if (init) failures.set(init, mapped);
      throw mapped;
    }
  };
}

/**
 * Replicate backend: `stability-ai/sdxl` by version (txt2img, inpaint, img2img and upscale as an img2img pass) or the official
 * `black-forest-labs/flux-schnell` (txt2img), through the official client with sync mode plus
 * polling, cancel on abort, and outputs downloaded and normalised to PNG.
 */
export function createReplicateBackend(opts: ReplicateBackendOptions): ImageBackend & { lastPredictTime?: number } {
  const { id, log } = opts;
  const waitSeconds = opts.waitSeconds ?? 5;
  const pollIntervalMs = opts.pollIntervalMs ?? REPLICATE_POLL_MS;
  const requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
  const client = (fetchFn: FetchFn): Replicate =>
    new Replicate({
      auth: opts.token,
      baseUrl: opts.baseUrl,
      fetch: fetchFn,
      useFileOutput: false,
      userAgent: 'imagebot (replicate-javascript)',
    });
  const errors = backendErrors(id, { badResponseRetryable: false });
  const cancelled = (): BackendError => errors.cancelled();
  let inFlight = 0;
  const presets = opts.presets ?? BUILTIN_PRESETS;
  const settingsFor = (r: GenerationRequest): RunSettings | { refused: string } => presetSettings(presets, 'replicate', r);

  /** Official models (no version) are billed per image; community ones (by version) by predict_time. */
  function billedPerImage(spec: { model: string; version?: string }, s: RunSettings | undefined): number | undefined {
    if (spec.version) return undefined;
    return (s?.preset.model === spec.model ? s.preset.usdPerImage : undefined) ?? opts.officialUsdPerImage;
  }

  /** The per-image price of a txt2img job with these settings, when its model is billed per image. */
  function usdPerImage(s: RunSettings): number | undefined {
    const probe = buildPrediction(id, { jobId: 'price', request: PRICE_PROBE, settings: s }, s, opts.sdxlVersion);
    return billedPerImage(probe, s);
  }

  /** Cancels a running prediction; returns it as cancelled (with the run time it bills), or undefined if the cancel failed. */
  async function cancelQuietly(predictionId: string): Promise<Prediction | undefined> {
    try {
      const p = await client(guardedFetch(id, 5000)).predictions.cancel(predictionId);
      log.info({ predictionId }, 'replicate prediction cancelled');
      return p;
    } catch (err) {
      log.warn({ predictionId, err }, 'replicate cancel failed; the prediction may keep running');
      return undefined;
    }
  }

  /** What Replicate bills a prediction that made no image: its run time (`predict_time`, else our wall time, an upper bound). */
  function billedOf(p: Prediction | undefined, wallS: number, perImage: number | undefined): NonNullable<BackendError['billed']> {
    const metrics = (p?.metrics ?? {}) as { predict_time?: number; image_count?: number };
    return {
      seconds: typeof metrics.predict_time === 'number' ? metrics.predict_time : wallS,
      images: typeof metrics.image_count === 'number' ? metrics.image_count : 0,
      ...(perImage !== undefined ? { usdPerImage: perImage } : {}),
    };
  }

  function reportProgress(p: Prediction, ctx: RunContext, last: { step: number }): void {
    const parsed = parseProgressFromLogs(p);
    if (!parsed || parsed.current === last.step) return;
    last.step = parsed.current;
    ctx.onProgress({ step: parsed.current, total: parsed.total, fraction: Math.min(1, Math.max(0, parsed.percentage)) });
  }

  /** Polls until terminal (or abort, or the budget's cap); a failed prediction comes back as such instead of a thrown Error. */
  async function settle(created: Prediction, ctx: RunContext, cap: AbortSignal | undefined, intervalMs: number): Promise<Prediction> {
    const last = { step: -1 };
    reportProgress(created, ctx, last);
    if (TERMINAL.has(created.status)) return created;
    try {
      return await client(guardedFetch(id, requestTimeoutMs, ctx.signal)).wait(created, { interval: intervalMs }, async (p) => {
        reportProgress(p, ctx, last);
        return ctx.signal.aborted || (cap?.aborted ?? false);
      });
    } catch (err) {
      const failed = /^Prediction failed: ([\s\S]*)$/.exec((err as Error).message ?? '');
      if (!failed) throw err;
      return { ...created, status: 'failed', error: failed[1] };
    }
  }

  /**
   * One output file, as hostile input: only from the delivery origins (each redirect re-checked, at
   * most 3), under the byte cap, PNG/JPEG/WebP by magic bytes and within the pixel cap by header,
   * before anything decodes it. A refusal is a bad response (the model's output is not usable).
   */
  async function download(url: string, signal: AbortSignal): Promise<Buffer> {
    try {
      const file = await fetchAttachment(url, {
        allowedOrigins: opts.outputOrigins,
        maxBytes: opts.outputMaxBytes ?? OUTPUT_LIMITS.maxBytes,
        maxPixels: OUTPUT_LIMITS.maxPixels,
        formats: OUTPUT_LIMITS.formats,
        // A little over each request's own timeout, which fires first and says so.
        timeoutMs: requestTimeoutMs + 1000,
        fetchImpl: guardedFetch(id, requestTimeoutMs, signal),
        httpError: (status) =>
          new BackendError(id, status >= 500 ? 'unavailable' : 'bad-response', `output download failed with HTTP ${status}`, { status }),
      });
      return file.bytes;
    } catch (err) {
      if (isBackendError(err)) throw err;
      // Network failures, timeouts and cancels keep the kind guardedFetch gave them.
      if (isUserError(err) && isBackendError(err.cause)) throw err.cause;
      const why = isUserError(err) ? err.userMessage : String(err);
      throw new BackendError(id, 'bad-response', `output refused: ${why}`, { cause: err, retryable: false });
    }
  }

  async function collect(p: Prediction, job: BackendJob, spec: PredictionSpec, signal: AbortSignal): Promise<Buffer[]> {
    const out: unknown = p.output;
    const urls = typeof out === 'string' ? [out] : Array.isArray(out) ? out : [];
    if (urls.length === 0 || !urls.every((u): u is string => typeof u === 'string')) {
      throw new BackendError(id, 'bad-response', 'prediction succeeded without output URLs');
    }
    if (urls.length < job.request.count) {
      // sdxl and flux drop images their safety checker flags and return the rest.
      throw new BackendError(id, 'unsafe', `Replicate returned ${urls.length} of ${job.request.count} images; the rest were filtered`);
    }
    const files = await Promise.all(urls.slice(0, job.request.count).map((u) => download(u, signal)));
    const { width, height } = job.request;
    // flux-schnell only takes an aspect ratio, so its images are fitted to the exact size.
    return Promise.all(files.map((f, i) => outputPng(errors, f, i + 1, { width, height, fit: spec.exactSize ? 'exact' : 'cover' })));
  }

  const backend: ImageBackend & { lastPredictTime?: number } = {
    id,
    family: 'replicate',
    capabilities: {
      kinds: ['txt2img', 'inpaint', 'img2img', 'upscale'],
      maxPixels: 2048 * 2048,
      maxPixelsByKind: { img2img: REPLICATE_IMAGE_INPUT_MAX_PIXELS, upscale: REPLICATE_IMAGE_INPUT_MAX_PIXELS },
      maxCount: 4,
      negativePrompt: true,
      seed: true,
      previews: false,
      paid: true,
    },
    get inFlight() {
      return inFlight;
    },
    settingsFor,
    usdPerImage,

    async health(signal?: AbortSignal): Promise<HealthStatus> {
      const done = healthReporter();
      const timeout = AbortSignal.timeout(3000);
      try {
        const res = await fetch(`${opts.baseUrl.replace(/\/+$/, '')}/account`, {
          headers: { Authorization: `Bearer ${opts.token}` },
          signal: signal ? AbortSignal.any([timeout, signal]) : timeout,
        });
        const body = (await res.json().catch(() => ({}))) as { username?: string };
        if (res.ok) return done(true, `account ${body.username ?? '?'}`);
        if (res.status === 401 || res.status === 403) return done(false, 'token rejected: check REPLICATE_API_TOKEN');
        return done(false, `HTTP ${res.status}`);
      } catch (err) {
        return done(false, timeout.aborted ? 'no answer within 3 s' : `unreachable: ${(err as Error).message}`);
      }
    },

    async reclaim(predictionId: string, o: { usdPerImage?: number; signal?: AbortSignal }): Promise<ReclaimedRun> {
      let p: Prediction;
      try {
        p = await client(guardedFetch(id, requestTimeoutMs, o.signal)).predictions.get(predictionId);
      } catch (err) {
        throw mapReplicateError(id, err);
      }
      const status = p.status;
      let cancelledNow = false;
      if (!TERMINAL.has(status)) {
        const stopped = await cancelQuietly(predictionId);
        if (!stopped) throw new BackendError(id, 'unavailable', `could not cancel prediction ${predictionId}`);
        p = stopped;
        cancelledNow = true;
      }
      // Without predict_time, the time since it was created: never less than what it ran.
      const createdAt = Date.parse(String(p.created_at ?? ''));
      const wallS = Number.isFinite(createdAt) ? Math.max(0, (Date.now() - createdAt) / 1000) : 0;
      return { billed: billedOf(p, wallS, o.usdPerImage), cancelled: cancelledNow, status };
    },

    async generate(job: BackendJob, ctx: RunContext): Promise<BackendOutput> {
      if (ctx.signal.aborted) throw cancelled();
      inFlight++;
      const started = performance.now();
      let running: string | undefined;
      let perImage: number | undefined;
      /** The prediction once it ended: whatever fails after that, its run time is billed. */
      let ended: Prediction | undefined;
      // The budget's cap on billed run time; wall time from the create is never less than predict_time.
      // It is met one poll and a cancel's round trip early, so what the run bills stays within it.
      const capS = ctx.maxBilledSeconds;
      // A capped run is polled at least every REPLICATE_POLL_MS whatever PROGRESS_POLL_MS says, so the
      // least run time a reservation holds (core/budget.ts LEAST_CAPPED_RUN_S) always leaves it room.
      const pollMs = capS !== undefined ? Math.min(pollIntervalMs, REPLICATE_POLL_MS) : pollIntervalMs;
      const cap = capS !== undefined ? AbortSignal.timeout(Math.max(0, capS * 1000 - pollMs - REPLICATE_CANCEL_MARGIN_MS)) : undefined;
      try {
        const spec = buildPrediction(id, job, job.settings ?? ownSettings(settingsFor, job.request), opts.sdxlVersion);
        perImage = billedPerImage(spec, job.settings);
        const target = spec.version ? { version: spec.version } : { model: spec.model };
        // A held create cannot be cut short, so it is held no longer than the cap (whole seconds: under one, not held).
        const hold = capS !== undefined ? Math.min(waitSeconds, Math.floor(capS)) : waitSeconds;
        // The held create is not tied to the job signal: only its answer names the prediction, so an
        // abort waits for it (held at most `hold` seconds) to cancel the run and book what it billed.
        const created = await client(guardedFetch(id, waitSeconds * 1000 + requestTimeoutMs)).predictions.create({
          ...target,
          input: spec.input,
          wait: hold > 0 ? hold : false,
        });
        if (TERMINAL.has(created.status)) ended = created;
        else running = created.id;
        // Before anything else can fail or the worker die: the job's next try must be able to find it.
        await ctx.onRemoteRun?.(created.id, perImage !== undefined ? { usdPerImage: perImage } : {}).catch((err: unknown) => {
          log.warn({ jobId: job.jobId, predictionId: created.id, err }, 'could not record the running prediction');
        });
        if (ctx.signal.aborted) throw cancelled();
        log.debug({ jobId: job.jobId, predictionId: created.id, status: created.status }, 'replicate prediction created');
        const p = await settle(created, ctx, cap, pollMs);
        if (ctx.signal.aborted) throw cancelled();
        if (TERMINAL.has(p.status)) {
          running = undefined;
          ended = p;
        } else if (cap?.aborted) {
          running = undefined;
          const stopped = await cancelQuietly(p.id);
          throw new BackendError(id, 'timeout', `prediction passed the ${capS} s the budget set aside for it; cancelled`, {
            retryable: false,
            billed: billedOf(stopped, (performance.now() - started) / 1000, perImage),
          });
        }
        if (p.status === 'failed') {
          const error = String(p.error ?? 'unknown error');
          if (/nsfw/i.test(error)) throw new BackendError(id, 'unsafe', `Replicate: ${error}`);
          throw new BackendError(id, 'bad-response', `prediction failed: ${error}`, { retryable: true });
        }
        if (p.status !== 'succeeded') throw new BackendError(id, 'unavailable', `prediction ended ${p.status} on Replicate`);
        const images = await collect(p, job, spec, ctx.signal);
        const metrics = (p.metrics ?? {}) as { predict_time?: number; image_count?: number };
        backend.lastPredictTime = metrics.predict_time;
        const wallS = (performance.now() - started) / 1000;
        log.info({ jobId: job.jobId, predictionId: p.id, predictTime: metrics.predict_time, wallS }, 'replicate prediction done');
        const version = typeof p.version === 'string' && p.version !== 'hidden' ? p.version : spec.version;
        return {
          images,
          seed: job.request.seed,
          billedSeconds: metrics.predict_time ?? wallS,
          billedImages: metrics.image_count ?? images.length,
          ...(perImage !== undefined ? { usdPerImage: perImage } : {}),
          model: { name: typeof p.model === 'string' && p.model ? p.model : spec.model, ...(version ? { version } : {}) },
          ...(spec.sampler ? { sampler: spec.sampler } : {}),
          steps: spec.steps,
          guidance: spec.guidance,
        };
      } catch (err) {
        const be = ctx.signal.aborted ? cancelled() : mapReplicateError(id, err);
        // Don't leave a paid prediction running after we gave up on it; what it ran is billed all the same.
        const stopped = running ? await cancelQuietly(running) : undefined;
        if (be.billed || (!running && !ended)) throw be;
        const billed = billedOf(ended ?? stopped, (performance.now() - started) / 1000, perImage);
        throw new BackendError(id, be.kind, be.message.slice(id.length + 2), {
          ...(be.status !== undefined ? { status: be.status } : {}),
          retryable: be.retryable,
          ...(be.retryAfterS !== undefined ? { retryAfterS: be.retryAfterS } : {}),
          cause: be.cause,
          billed,
        });
      } finally {
        inFlight--;
      }
    },
  };
  return backend;
}
