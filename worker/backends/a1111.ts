import sharp from 'sharp';
import type { z } from 'zod';
import { BackendError } from '../../core/errors.js';
import { type GenerationRequest, strengthOf } from '../../core/generation.js';
import type { Logger } from '../../core/io/logger.js';
import { BUILTIN_PRESETS, type PresetCatalog } from '../../core/presets.js';
import {
  A1111_SAMPLER,
  A1111_SCHEDULER,
  type A1111ExtrasBody,
  type A1111Run,
  commonBody,
  decodeBase64Image,
  generationInfoSchema,
  generationResponseSchema,
  img2imgBody,
  inpaintBody,
  progressSchema,
  sdModelsSchema,
  upscaleResponseSchema,
} from './a1111-schemas.js';
import type {
  BackendCapabilities,
  BackendJob,
  BackendOutput,
  BackendProgress,
  HealthStatus,
  ImageBackend,
  RunContext,
  RunSettings,
} from './backend.js';
import { backendErrors, healthReporter, isImagePass, ownSettings, presetSettings } from './backend.js';
import { basicAuthHeader, createJsonClient, FifoLock, type JsonClient } from './http.js';
import { outputPng } from './output-image.js';

/** Settings for one AUTOMATIC1111 / Forge / SD.Next box. */
export interface A1111Options {
  /** e.g. `a1111` or `a1111#2`. */
  id: string;
  /** API base, e.g. `http://gpu-box:7860`. Credentials in the URL are moved into `auth`. */
  url: string;
  /** `user:pass` matching the box's `--api-auth`. */
  auth?: string;
  /** Checkpoint requested per job through override_settings. */
  checkpoint?: string;
  /** How often /sdapi/v1/progress is polled while a job runs (default 500). */
  pollIntervalMs?: number;
  /** A job whose box answers /progress but reports no change this long is abandoned as 'timeout'. */
  progressTimeoutMs: number;
  /** A box that does not answer /progress at all this long is dead: the job moves on and the circuit opens (default 2 s). */
  deadAfterMs?: number;
  /** Presets in force (default the built-ins). */
  presets?: PresetCatalog;
  /** The box's identity (its normalised URL's id), shared by every worker configured with it. */
  boxId?: string;
  /** Hard cap on one generation request (default 10 min). */
  requestTimeoutMs?: number;
  /** Upscaler for upscale jobs, as the box lists it in /sdapi/v1/upscalers (A1111_UPSCALER; default `R-ESRGAN 4x+`). */
  upscaler?: string;
  /**
   * Cap on one upscale (default 3 min, at most requestTimeoutMs). The extras tab reports no steps on
   * /progress, so the no-progress watchdog cannot tell a slow upscaler from a hung box; this can.
   */
  upscaleTimeoutMs?: number;
  log: Logger;
}

const DEFAULT_A1111_UPSCALER = 'R-ESRGAN 4x+';

const A1111_CAPABILITIES: BackendCapabilities = {
  kinds: ['txt2img', 'inpaint', 'img2img', 'upscale'],
  maxPixels: 2048 * 2048,
  maxCount: 4,
  negativePrompt: true,
  seed: true,
  previews: true,
  paid: false,
};

/** Why a job's progress watch stops: its request settled (nobody reads the reason). */
const WATCH_DONE = 'request settled';

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

/**
 * Where the box stands, as /progress says: busy or idle, and a fingerprint of its state that changes
 * whenever it moves (step, batch, text; not eta_relative, which drifts with the clock). Previews
 * are compared on their own (the probe does not fetch them).
 */
function progressPoint(p: z.infer<typeof progressSchema>): { busy: boolean; at: string } {
  const s = p.state;
  // state.begin() sets job_count to -1 until sampling starts (model loading): busy too.
  const busy = (s.job_count ?? 0) !== 0 || (s.job ?? '') !== '';
  const at = [busy, s.job_no, s.job_count, s.sampling_step, s.sampling_steps, p.progress, s.job_timestamp, p.textinfo].join('|');
  return { busy, at };
}

interface WatchArgs {
  client: JsonClient;
  pollMs: number;
  /** Answers that do not move for this long: hung. */
  stuckAfterMs: number;
  /** No answer at all for this long: dead. */
  deadAfterMs: number;
  /** Aborted when the generation request settles. */
  stop: AbortSignal;
  /** Asked before every poll; false means the box is another job's now (never poll it again). */
  holds: () => Promise<boolean>;
  onProgress: (p: BackendProgress) => void;
  /** `dead`: the box stopped answering; otherwise it answers but does not move (`stuckOn`: where it stands, if busy). */
  onDead: (why: string, dead: boolean, stuckOn?: string) => void;
  onLeaseLost: () => void;
}

/**
 * Polls /progress while our request is open. The box counts as alive only while it answers
 * (deadAfterMs) and what it reports changes (stuckAfterMs: step, batch, preview, text): a hung
 * sampler or a box idle with our request open answers /progress forever but never moves.
 * eta_relative is left out because it drifts with the clock. /progress is global to the box: it is
 * ours only because we hold the box's lease, which is checked before every poll.
 */
function watchProgress(a: WatchArgs): void {
  let lastChange = performance.now();
  let lastAnswer = performance.now();
  let fingerprint = '';
  let busyAt: string | undefined;
  let lastStep = -1;
  let lastTotal = -1;
  let lastPreview: string | null = null;
  let lastError: string | undefined;
  let where = 'no answer yet';
  /** Waiting on the lease (Redis), not on the box: that wait is not the box's silence. */
  let checkingLease = false;
  const dog = setInterval(
    () => {
      if (a.stop.aborted || checkingLease) return;
      const now = performance.now();
      if (now - lastAnswer > a.deadAfterMs) {
        clearInterval(dog);
        a.onDead(`no answer from /progress for ${a.deadAfterMs} ms (${lastError ?? 'silent'}); box taken for dead`, true);
      } else if (now - lastChange > a.stuckAfterMs) {
        clearInterval(dog);
        a.onDead(`no progress for ${a.stuckAfterMs} ms (${where}); box taken for hung`, false, busyAt);
      }
    },
    Math.max(10, Math.min(a.pollMs, a.deadAfterMs / 5, a.stuckAfterMs / 5)),
  );
  a.stop.addEventListener('abort', () => clearInterval(dog), { once: true });

  void (async () => {
    while (!a.stop.aborted) {
      await sleep(a.pollMs, a.stop);
      if (a.stop.aborted) return;
      try {
        checkingLease = true;
        const asked = performance.now();
        let ours: boolean;
        try {
          ours = await a.holds();
        } finally {
          checkingLease = false;
          lastAnswer += performance.now() - asked;
        }
        if (!ours) {
          clearInterval(dog);
          a.onLeaseLost();
          return;
        }
        if (a.stop.aborted) return;
        const p = await a.client.json('/sdapi/v1/progress?skip_current_image=false', progressSchema, {
          signal: a.stop,
          timeoutMs: a.deadAfterMs,
        });
        lastAnswer = performance.now();
        lastError = undefined;
        const s = p.state;
        const { busy, at: fp } = progressPoint(p);
        busyAt = busy ? fp : undefined;
        const step = s.sampling_step ?? 0;
        const total = s.sampling_steps ?? 0;
        const preview = p.current_image || null;
        where = busy ? `step ${step}/${total}` : 'box idle while our request is open';
        if (fp !== fingerprint || preview !== lastPreview) {
          fingerprint = fp;
          lastChange = performance.now();
        }
        // Idle state keeps the last job's step numbers, so only a busy box reports our progress.
        if (
          busy &&
          (s.job_count ?? 0) > 0 &&
          total > 0 &&
          (step !== lastStep || total !== lastTotal || (preview !== null && preview !== lastPreview))
        ) {
          lastStep = step;
          lastTotal = total;
          lastPreview = preview;
          a.onProgress({
            step,
            total,
            fraction: Math.min(1, Math.max(0, p.progress)),
            ...(preview ? { preview: decodeBase64Image(preview) } : {}),
          });
        }
      } catch (err) {
        if (a.stop.aborted) return;
        lastError = err instanceof Error ? err.message : String(err);
      }
    }
  })();
}

/**
 * AUTOMATIC1111 / Forge / SD.Next through its `--api`. One job at a time per box (FIFO, in-process);
 * progress and previews from /sdapi/v1/progress; a box that dies or hangs mid-job is noticed within
 * progressTimeoutMs; cancelling interrupts the box.
 */
export function createA1111Backend(o: A1111Options): ImageBackend {
  const url = new URL(o.url);
  // fetch refuses URLs with credentials; accept them anyway and send them as Basic auth.
  const auth = o.auth ?? (url.username ? `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}` : undefined);
  url.username = '';
  url.password = '';
  const client = createJsonClient({
    backend: o.id,
    baseUrl: url.toString(),
    headers: auth ? { authorization: basicAuthHeader(auth) } : {},
    credentialHint: 'A1111_AUTH',
  });
  // One job at a time in this process as well: the lease (worker/boxes) serialises the workers.
  const lock = new FifoLock();
  const pollMs = o.pollIntervalMs ?? 500;
  const deadAfterMs = o.deadAfterMs ?? 2000;
  const presets = o.presets ?? BUILTIN_PRESETS;
  /** Where the box stood when a job was abandoned because it stopped moving (progressPoint), until it moves again. */
  let stuck: string | undefined;
  /**
   * Where the last probe of the open circuit found the box busy. While its circuit is open no job of
   * ours runs there, so a box busy at the same point at two probes is stuck, whichever worker's job
   * got stuck on it (`stuck` is only this process's).
   */
  let probedBusyAt: string | undefined;
  const requestTimeoutMs = o.requestTimeoutMs ?? 10 * 60_000;
  const upscaleTimeoutMs = Math.min(o.upscaleTimeoutMs ?? 3 * 60_000, requestTimeoutMs);
  const upscaler = o.upscaler ?? DEFAULT_A1111_UPSCALER;
  const log = o.log;

  const errors = backendErrors(o.id, { badResponseRetryable: true });
  const { cancelled, badResponse, rejected, leaseLost } = errors;

  function settingsFor(r: GenerationRequest): RunSettings | { refused: string } {
    const s = presetSettings(presets, 'a1111', r);
    if ('refused' in s) return s;
    if (s.preset.needsCheckpoint && !s.preset.checkpoint)
      return { refused: `preset "${r.preset}" needs its own checkpoint on the box; name one in PRESETS_FILE` };
    return s;
  }

  function runOf(s: RunSettings): A1111Run {
    const checkpoint = s.preset.checkpoint ?? o.checkpoint;
    return {
      steps: s.steps,
      guidance: s.guidance,
      sampler: s.preset.sampler ?? A1111_SAMPLER,
      scheduler: s.preset.scheduler ?? A1111_SCHEDULER,
      ...(checkpoint ? { checkpoint } : {}),
    };
  }

  /** A failure on the wire (refused, reset, unreachable): the box is not there; the circuit opens at once. */
  function unreachable(err: BackendError): BackendError {
    if (err.kind !== 'unavailable' || err.status !== undefined || err.opensCircuit) return err;
    return new BackendError(o.id, 'unavailable', err.message.replace(`${o.id}: `, ''), { cause: err, opensCircuit: true });
  }

  /** Waits for the box, runs `fn`, and makes sure nothing but a BackendError escapes. */
  async function exclusive<T>(signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
    let release: () => void;
    try {
      release = await lock.acquire(signal);
    } catch {
      throw cancelled('cancelled while waiting for the box');
    }
    try {
      if (signal?.aborted) throw cancelled('cancelled while waiting for the box');
      return await fn();
    } catch (err) {
      if (err instanceof BackendError) throw err;
      throw badResponse(`unexpected failure: ${err instanceof Error ? err.message : String(err)}`, err);
    } finally {
      release();
    }
  }

  /**
   * On a shared box, before sending anything: waits until the box is idle. Holding the lease means
   * no other job of ours runs there, but a generation can outlive its job (a worker killed mid-job
   * leaves it running until it ends) and the owner may be using the web UI; sending now would put a
   * second request on the box and read that generation's progress and preview as ours. A box that
   * stops answering meanwhile is dead, one that does not move is hung; neither is sent the job.
   */
  async function untilIdle(ctx: RunContext, holds: () => Promise<boolean>): Promise<void> {
    let lastAnswer = performance.now();
    let lastChange = performance.now();
    let at: string | undefined;
    let waited = false;
    for (;;) {
      if (ctx.signal.aborted) {
        const reason: unknown = ctx.signal.reason;
        throw reason instanceof BackendError ? reason : cancelled('cancelled while the box finished other work');
      }
      const asked = performance.now();
      const ours = await holds();
      // Time spent waiting on the lease (Redis) is not the box's silence.
      lastAnswer += performance.now() - asked;
      if (!ours) throw leaseLost();
      try {
        const p = progressPoint(
          await client.json('/sdapi/v1/progress?skip_current_image=true', progressSchema, { signal: ctx.signal, timeoutMs: deadAfterMs }),
        );
        lastAnswer = performance.now();
        if (!p.busy) {
          if (waited) log.info('box idle again; sending the job');
          return;
        }
        if (p.at !== at) {
          at = p.at;
          lastChange = performance.now();
        }
        if (!waited)
          log.info('box busy with a generation that is not a job of ours (an earlier one cut short, or the web UI); waiting for it');
        waited = true;
      } catch (err) {
        if (ctx.signal.aborted) continue;
        if (!(err instanceof BackendError) || err.kind === 'rejected') throw err;
        // Refused or reset: not there at all, no need to wait out deadAfterMs.
        if (err.kind === 'unavailable' && err.status === undefined) throw unreachable(err);
      }
      const now = performance.now();
      if (now - lastAnswer > deadAfterMs)
        throw new BackendError(o.id, 'unavailable', `no answer from /progress for ${deadAfterMs} ms; box taken for dead`, {
          opensCircuit: true,
        });
      if (now - lastChange > o.progressTimeoutMs) {
        stuck = at;
        throw new BackendError(
          o.id,
          'timeout',
          `busy with other work that has not moved for ${o.progressTimeoutMs} ms; box taken for hung`,
          {
            opensCircuit: true,
          },
        );
      }
      await sleep(pollMs, ctx.signal);
    }
  }

  /** Global on the box: stops whatever runs there, which is ours only while we hold the lease. */
  function interrupt(ctx: RunContext): void {
    void (async () => {
      if (ctx.lease && !(await ctx.lease.holds().catch(() => false))) {
        log.info('lease lost: the box runs another job now, so it is not interrupted');
        return;
      }
      await client.raw('/sdapi/v1/interrupt', { method: 'POST', timeoutMs: 3000 });
    })().catch((err: unknown) => {
      log.debug({ err }, 'interrupt not delivered');
    });
  }

  async function toPngs(images: string[], first: number, r: GenerationRequest): Promise<Buffer[]> {
    const mine = images.slice(first, first + r.count);
    if (mine.length < r.count) throw badResponse(`returned ${mine.length} of ${r.count} images (interrupted on the box?)`);
    // samples_format jpg/webp on the box come back as PNG.
    return Promise.all(
      mine.map((b64, i) => outputPng(errors, decodeBase64Image(b64), i + 1, { width: r.width, height: r.height, fit: 'exact' })),
    );
  }

  function parseInfo(text: string) {
    try {
      return generationInfoSchema.parse(JSON.parse(text));
    } catch (err) {
      throw badResponse('info is not JSON with a seed', err);
    }
  }

  async function run(job: BackendJob, ctx: RunContext): Promise<BackendOutput> {
    const r = job.request;
    const settings = job.settings ?? ownSettings(settingsFor, r);
    const a = runOf(settings);
    let path = '/sdapi/v1/txt2img';
    let body: object = commonBody(r, a);
    if (r.kind === 'inpaint') {
      if (!job.image || !job.mask) throw rejected('inpaint job without a prepared image and mask');
      path = '/sdapi/v1/img2img';
      body = inpaintBody(r, job.image, job.mask, a);
    } else if (isImagePass(r.kind)) {
      if (!job.image) throw rejected(`${r.kind} job without its input image`);
      path = '/sdapi/v1/img2img';
      body = img2imgBody(r, job.image, strengthOf(r), a);
    }
    const holds = () => (ctx.lease ? ctx.lease.holds().catch(() => false) : Promise.resolve(true));
    // Aborted with the BackendError the caller should see; the HTTP client passes that reason through.
    const abandon = new AbortController();
    const giveUp = (err: BackendError, touch = true) => {
      if (abandon.signal.aborted) return;
      if (touch) interrupt(ctx);
      abandon.abort(err);
    };
    const onCancel = () => {
      const reason: unknown = ctx.signal.reason;
      giveUp(reason instanceof BackendError ? reason : cancelled('cancelled during generation'));
    };
    ctx.signal.addEventListener('abort', onCancel, { once: true });
    const stopWatch = new AbortController();
    if (!(await holds())) throw leaseLost();
    // Right after our own job left the box cleanly the box is idle as far as we can know; asking
    // again would only cost a round trip (the owner's web UI within that moment is the accepted risk).
    if (ctx.lease && !ctx.lease.takeKnownIdle?.()) await untilIdle(ctx, holds);
    watchProgress({
      client,
      pollMs,
      stuckAfterMs: o.progressTimeoutMs,
      deadAfterMs,
      stop: stopWatch.signal,
      holds,
      onProgress: ctx.onProgress,
      onDead: (why, dead, stuckOn) => {
        // A sampler stuck on the box: the health probe keeps the circuit open while the box still stands there.
        if (!dead && stuckOn) stuck = stuckOn;
        log.warn(
          { jobId: job.jobId, why },
          dead ? 'box stopped answering; abandoning the job' : 'box stopped making progress; abandoning the job',
        );
        // A silent box would not hear an interrupt either.
        giveUp(new BackendError(o.id, dead ? 'unavailable' : 'timeout', why, { opensCircuit: true }), !dead);
      },
      onLeaseLost: () => {
        log.warn({ jobId: job.jobId }, 'lease on the box lost to another job; leaving the box alone');
        giveUp(leaseLost(), false);
      },
    });
    const started = performance.now();
    log.debug({ jobId: job.jobId, path, width: r.width, height: r.height, count: r.count, steps: a.steps }, 'generation sent');
    try {
      const res = await client.json(path, generationResponseSchema, { body, signal: abandon.signal, timeoutMs: requestTimeoutMs });
      const seconds = (performance.now() - started) / 1000;
      const info = parseInfo(res.info);
      const images = await toPngs(res.images, info.index_of_first_image ?? 0, r);
      log.debug({ jobId: job.jobId, seconds, seed: info.seed }, 'generation done');
      if (a.checkpoint && info.sd_model_name && !a.checkpoint.startsWith(info.sd_model_name))
        log.warn(
          { asked: a.checkpoint, ran: info.sd_model_name },
          'the box ran another checkpoint than the one asked for (A1111 falls back when it does not know a name)',
        );
      const schedule = info.extra_generation_params?.['Schedule type'];
      const sampler = info.sampler_name ?? a.sampler;
      return {
        images,
        seed: info.seed,
        billedSeconds: seconds,
        billedImages: images.length,
        model: {
          name: info.sd_model_name ?? a.checkpoint ?? 'the box’s loaded model',
          ...(info.sd_model_hash ? { version: info.sd_model_hash } : {}),
        },
        sampler: typeof schedule === 'string' && schedule !== '' ? `${sampler} (${schedule})` : sampler,
        steps: a.steps,
        guidance: a.guidance,
      };
    } catch (err) {
      // Our request timed out while the box may still be working on it.
      if (err instanceof BackendError && err.kind === 'timeout' && !abandon.signal.aborted) interrupt(ctx);
      const e = err instanceof BackendError && !abandon.signal.aborted ? unreachable(err) : err;
      if (e instanceof BackendError && e.kind !== 'cancelled')
        log.warn({ jobId: job.jobId, kind: e.kind, status: e.status, msg: e.message }, 'generation failed');
      throw e;
    } finally {
      // With a reason: abort() without one builds a DOMException (with its stack) every job.
      stopWatch.abort(WATCH_DONE);
      ctx.signal.removeEventListener('abort', onCancel);
    }
  }

  /**
   * The extras tab on the box (caller holds the lock). A1111 floors its output to multiples of 8,
   * so the result may be a few pixels off `factor` × the input. An upscaler name the box lacks is
   * a configuration error, not an outage: rejected, so the circuit stays closed.
   */
  async function extras(png: Buffer, factor: number, name: string, signal: AbortSignal | undefined, timeoutMs: number): Promise<Buffer> {
    const body: A1111ExtrasBody = { image: png.toString('base64'), resize_mode: 0, upscaling_resize: factor, upscaler_1: name };
    let res: { image: string };
    try {
      res = await client.json('/sdapi/v1/extra-single-image', upscaleResponseSchema, { body, signal, timeoutMs });
    } catch (err) {
      if (err instanceof BackendError && err.status === 500 && /could not find upscaler/i.test(err.message)) {
        throw new BackendError(
          o.id,
          'rejected',
          `the box has no upscaler named "${name}"; set A1111_UPSCALER to one it lists at /sdapi/v1/upscalers`,
          {
            status: 500,
            retryable: false,
            cause: err,
          },
        );
      }
      throw err;
    }
    return outputPng(errors, decodeBase64Image(res.image), 1, { fit: 'any' });
  }

  /** An upscale job (caller holds the lock): the box's upscaler on the untouched source, then exactly the requested size. */
  async function runUpscale(job: BackendJob, ctx: RunContext): Promise<BackendOutput> {
    const r = job.request;
    const src = job.source;
    if (!src) throw rejected('upscale job without its source image');
    if (r.count !== 1) throw rejected(`an upscale makes one image, not ${r.count}`);
    const abandon = new AbortController();
    const onCancel = () => {
      if (abandon.signal.aborted) return;
      interrupt(ctx);
      const reason: unknown = ctx.signal.reason;
      abandon.abort(reason instanceof BackendError ? reason : cancelled('cancelled during upscale'));
    };
    const holds = () => (ctx.lease ? ctx.lease.holds().catch(() => false) : Promise.resolve(true));
    if (!(await holds())) throw leaseLost();
    ctx.signal.addEventListener('abort', onCancel, { once: true });
    // A box that stops answering is given up after deadAfterMs, as in a generation. The extras tab
    // reports no steps, so only silence counts: a slow upscaler is capped by upscaleTimeoutMs alone.
    const stopWatch = new AbortController();
    watchProgress({
      client,
      pollMs,
      stuckAfterMs: Number.POSITIVE_INFINITY,
      deadAfterMs,
      stop: stopWatch.signal,
      holds,
      onProgress: () => undefined,
      onDead: (why) => {
        log.warn({ jobId: job.jobId, why }, 'box stopped answering; abandoning the upscale');
        // A silent box would not hear an interrupt either.
        if (!abandon.signal.aborted) abandon.abort(new BackendError(o.id, 'unavailable', why, { opensCircuit: true }));
      },
      onLeaseLost: () => {
        log.warn({ jobId: job.jobId }, 'lease on the box lost to another job; leaving the box alone');
        if (!abandon.signal.aborted) abandon.abort(leaseLost());
      },
    });
    const factor = r.width / src.width;
    const started = performance.now();
    // The extras tab reports no steps, so start and end are all the progress there is.
    ctx.onProgress({ step: 0, total: 1, fraction: 0 });
    log.debug({ jobId: job.jobId, factor, upscaler, from: `${src.width}×${src.height}`, to: `${r.width}×${r.height}` }, 'upscale sent');
    try {
      const out = await extras(src.image, factor, upscaler, abandon.signal, upscaleTimeoutMs);
      const meta = await sharp(out).metadata();
      const png =
        meta.width === r.width && meta.height === r.height
          ? out
          : await sharp(out).resize(r.width, r.height, { fit: 'fill', kernel: 'lanczos3' }).png().toBuffer();
      const seconds = (performance.now() - started) / 1000;
      ctx.onProgress({ step: 1, total: 1, fraction: 1 });
      log.debug({ jobId: job.jobId, seconds, boxSize: `${meta.width}×${meta.height}` }, 'upscale done');
      return { images: [png], seed: r.seed, billedSeconds: seconds, billedImages: 1, model: { name: `upscaler ${upscaler}` } };
    } catch (err) {
      if (err instanceof BackendError && err.kind === 'timeout' && !abandon.signal.aborted) interrupt(ctx);
      // A box refusing connections is not there at all: its circuit opens at once, as for a generation.
      const e = err instanceof BackendError && !abandon.signal.aborted ? unreachable(err) : err;
      if (e instanceof BackendError && e.kind !== 'cancelled')
        log.warn({ jobId: job.jobId, kind: e.kind, status: e.status, msg: e.message }, 'upscale failed');
      throw e;
    } finally {
      stopWatch.abort(WATCH_DONE);
      ctx.signal.removeEventListener('abort', onCancel);
    }
  }

  return {
    id: o.id,
    family: 'a1111',
    capabilities: A1111_CAPABILITIES,
    ...(o.boxId ? { box: { id: o.boxId } } : {}),
    get inFlight() {
      return lock.inFlight;
    },
    settingsFor,
    async health(signal?: AbortSignal, ho?: { circuitOpen?: boolean }): Promise<HealthStatus> {
      const done = healthReporter();
      try {
        const models = await client.json('/sdapi/v1/sd-models', sdModelsSchema, { signal, timeoutMs: 3000 });
        let detail = `${models.length} model${models.length === 1 ? '' : 's'}`;
        const ck = o.checkpoint;
        if (ck && !models.some((m) => m.title === ck || m.model_name === ck || m.title.startsWith(`${ck} `))) {
          detail += `; checkpoint ${ck} not listed`;
        }
        if (stuck || ho?.circuitOpen) {
          // The box answers, but is its sampler moving? A stuck box is not well, and no member's job is sent to find out.
          const now = progressPoint(
            await client.json('/sdapi/v1/progress?skip_current_image=true', progressSchema, { signal, timeoutMs: 3000 }),
          );
          if (now.busy && now.at === stuck) return done(false, 'the sampler is still stuck where a job was given up');
          stuck = undefined;
          const before = probedBusyAt;
          probedBusyAt = ho?.circuitOpen && now.busy ? now.at : undefined;
          if (probedBusyAt === before && before !== undefined)
            return done(false, 'busy with a generation that has not moved since the last probe');
          if (probedBusyAt && before === undefined)
            return done(false, 'busy with a generation not of ours; looking again at the next probe');
        }
        return done(true, detail);
      } catch (err) {
        return done(false, err instanceof Error ? err.message : String(err));
      }
    },
    generate(job, ctx) {
      // Upscale jobs use the box's own upscaler, under the same one-job-at-a-time lock.
      return exclusive(ctx.signal, () => (job.request.kind === 'upscale' ? runUpscale(job, ctx) : run(job, ctx)));
    },
  };
}
