import { DelayedError, type Job, UnrecoverableError } from 'bullmq';
import { isBoxFamily } from '../core/backend-families.js';
import { isBackendError } from '../core/errors.js';
import type { JobFailure } from '../core/failures.js';
import { type Attempt, type JobPayload, type JobProgress, type JobResult, jobPayloadSchema } from '../core/generation.js';
import type { BudgetReservations } from '../core/io/budget-reservations.js';
import { type ImageTasks, imageTasks } from '../core/io/image-tasks.js';
import type { Logger } from '../core/io/logger.js';
import type { RemoteRun, ResultStore } from '../core/io/results.js';
import { inlineTasks, type ThreadPool } from '../core/io/thread-pool.js';
import { failureText } from '../core/messages.js';
import type { BackendOutput, BackendProgress } from './backends/backend.js';
import { type BackendChain, ChainError, type WaitingReport } from './backends/chain.js';
import { DEFAULT_INPUT_MAX_PIXELS, loadJobInputs } from './inputs.js';
import { paidBudgetOf, reservingBudget } from './paid-budget.js';
import type { ImageClassifier } from './safety/classifier.js';

export interface ProcessorDeps {
  chain: BackendChain;
  results: ResultStore;
  log: Logger;
  /** Minimum gap between two progress reports of one job (each is a Redis round trip and an event). */
  progressEveryMs?: number;
  /** Aborted when the worker shuts down, so running backend work is interrupted and handed back. */
  shutdown?: AbortSignal;
  /** Running jobs' abort controllers by job id, so a cancel request can reach them. */
  running?: Map<string, AbortController>;
  /** The key that is set when a member cancelled the job (before this worker picked it up); read with the job's other start-up keys. */
  cancelFlag?: (jobId: string) => string;
  /** Output safety: every image is classified before it is stored for posting. */
  classifier?: () => Promise<ImageClassifier>;
  nsfwThreshold?: number;
  /** Most pixels an img2img or upscale source may decode to (default {@link DEFAULT_INPUT_MAX_PIXELS}). */
  maxInputPixels?: number;
  /** Where paste-back and the grid run: the worker's thread pool, so the job's lock keeps being renewed (inline without one). */
  cpu?: Pick<ThreadPool<ImageTasks>, 'run'>;
  /** The guild months' shared budget reservations; without them, admission's `paidAllowed` alone decides. */
  budgets?: Pick<BudgetReservations, 'reserve' | 'settle'>;
  /**
   * A guild's own worker: a job none of its boxes could run is given back at once (failure code
   * `handed_back`), for the bot to move to the shared queue, rather than retried here or failed.
   */
  handBack?: boolean;
}

/** Chain failures a guild's own worker gives back to the shared queue: nothing about the job itself was wrong. */
const HANDED_BACK_CODES: ReadonlySet<string> = new Set(['all_backends_failed', 'unsupported', 'budget_spent']);

/** Refuses a result whose images the classifier flags, unless the guild allows NSFW in this channel. */
async function screen(deps: ProcessorDeps, payload: JobPayload, images: Buffer[], attempts: Attempt[], log: Logger): Promise<void> {
  if (!deps.classifier || payload.nsfwAllowed) return;
  const classifier = await deps.classifier();
  const threshold = deps.nsfwThreshold ?? 0.7;
  for (const img of images) {
    const c = await classifier.classify(img);
    if (c.nsfwScore >= threshold) {
      log.warn({ score: Math.round(c.nsfwScore * 1000) / 1000, top: c.top }, 'output flagged as NSFW; not posted');
      throw new ChainError('unsafe', attempts, false, "the image was flagged as NSFW by this server's filter and was not posted.");
    }
  }
}

/**
 * Whether a live preview may be published. Where the guild would hold back an NSFW result, each
 * preview is classified first (a small image: tens of milliseconds on the worker's thread pool);
 * one flagged preview stops the job's previews for good, and a preview arriving while the last is
 * still being classified is skipped rather than queued (progress still goes out without it).
 */
function previewScreen(deps: ProcessorDeps, payload: JobPayload, log: Logger): (preview: Buffer) => Promise<boolean> {
  // Where results are not screened (NSFW allowed here, or screening off), previews are not either.
  const getClassifier = deps.classifier;
  if (payload.nsfwAllowed || !getClassifier) return async () => true;
  const threshold = deps.nsfwThreshold ?? 0.7;
  let stopped = false;
  let busy = false;
  return async (preview) => {
    if (stopped || busy) return false;
    busy = true;
    try {
      const c = await (await getClassifier()).classify(preview);
      if (c.nsfwScore >= threshold) {
        stopped = true;
        log.warn({ score: Math.round(c.nsfwScore * 1000) / 1000, top: c.top }, 'preview flagged as NSFW; previews stopped for this job');
      }
      return !stopped;
    } catch (err) {
      // A preview that cannot be screened is not shown; the job itself goes on.
      log.debug({ err }, 'preview not screened; not shown');
      return false;
    } finally {
      busy = false;
    }
  };
}

export type Processor = (job: Job<JobPayload, JobResult>, token?: string) => Promise<JobResult>;

/**
 * The BullMQ processor: parse → chain → store images → return a small JobResult.
 * A whole-chain transient failure is rethrown so BullMQ retries with backoff; anything final
 * becomes UnrecoverableError after its summary (code, member-safe message, attempts) is stored.
 */
export function createProcessor(deps: ProcessorDeps): Processor {
  const every = deps.progressEveryMs ?? 250;
  const cpu = deps.cpu ?? inlineTasks(imageTasks);
  return async (job, token) => {
    const parsed = jobPayloadSchema.safeParse(job.data);
    if (!parsed.success) {
      deps.log.error({ jobId: job.id, issues: parsed.error.issues }, 'invalid job payload');
      if (job.id) await deps.results.putFailure(job.id, { code: 'invalid_payload', message: failureText.invalid_payload, attempts: [] });
      throw new UnrecoverableError('invalid payload');
    }
    const payload = parsed.data;
    const log = deps.log.child({ jobId: payload.jobId, attempt: job.attemptsMade + 1 });
    const started = performance.now();
    const controller = new AbortController();
    const shuttingDown = new Error('worker shutting down');
    const onShutdown = () => controller.abort(shuttingDown);
    deps.shutdown?.addEventListener('abort', onShutdown, { once: true });
    // Registered before the cancel flag is read, so a cancel arriving in between is not missed.
    deps.running?.set(payload.jobId, controller);
    let earlier: Attempt[] = [];

    let lastReport = 0;
    let backendName = '';
    /** Where the job went instead of the box it was meant for; every later report says so. */
    let route: JobProgress['route'];
    const onProgress = (p: BackendProgress) => {
      const now = performance.now();
      if (now - lastReport < every && p.fraction < 1) return;
      lastReport = now;
      void report(p).catch((err: unknown) => log.debug({ err }, 'progress report failed'));
    };
    const previews = previewScreen(deps, payload, log);
    const report = async (p: BackendProgress) => {
      let previewKey: string | undefined;
      if (p.preview && (await previews(p.preview))) {
        previewKey = deps.results.previewKey(payload.jobId);
        await deps.results.put(previewKey, p.preview);
      }
      const progress: JobProgress = { backend: backendName, step: p.step, total: p.total, fraction: p.fraction, previewKey };
      await job.updateProgress(route ? { ...progress, route } : progress);
    };
    /** The job waits for a GPU box: its place, and the paid provider it may still go to. */
    const onWaiting = (w: WaitingReport) => {
      const progress: JobProgress = {
        backend: '',
        step: 0,
        total: 0,
        fraction: 0,
        waiting: { ahead: w.ahead, ...(w.start ? { startLowMs: Math.round(w.start.lowMs), startHighMs: Math.round(w.start.highMs) } : {}) },
        ...(w.fallback ? { fallback: { ...w.fallback, usd: Math.round(w.fallback.usd * 1e6) / 1e6 } } : {}),
      };
      void job.updateProgress(progress).catch((err: unknown) => log.debug({ err }, 'waiting report failed'));
    };

    const budget = deps.budgets
      ? reservingBudget({ reservations: deps.budgets, payload, run: job.attemptsStarted, log })
      : paidBudgetOf(payload);
    const runChain = (inputs: Awaited<ReturnType<typeof loadJobInputs>>) =>
      deps.chain.run(
        { jobId: payload.jobId, request: payload.request, image: inputs.image, mask: inputs.mask, source: inputs.source },
        { signal: controller.signal, onProgress: (p) => onProgress(p) },
        {
          budget,
          // The operator's rule for its shared boxes; a guild's own boxes always serve their guild.
          boxes: deps.handBack === true || payload.boxesAllowed !== false,
          queue: { priority: job.opts.priority ?? 0, arrivedAt: job.timestamp },
          onWaiting,
          onRoute: (r) => {
            backendName = r.backend.id;
            route = { reason: r.reason, backend: r.backend.id, ...(r.usd > 0 ? { usd: Math.round(r.usd * 1e6) / 1e6 } : {}) };
            log.info({ reason: r.reason, backend: r.backend.id, usd: r.usd }, 'sent elsewhere than the box');
            void job
              .updateProgress({ backend: r.backend.id, step: 0, total: 0, fraction: 0, route })
              .catch((err: unknown) => log.debug({ err }, 'route report failed'));
          },
          onRemoteRun: (r) => deps.results.putRemoteRun(payload.jobId, r),
          onAttempt: (b) => {
            backendName = b.id;
            // Back on a box after the cloud failed: it runs where it was meant to after all.
            if (isBoxFamily(b.family)) route = undefined;
          },
        },
      );

    /**
     * The paid run an earlier try started last, if none of the job's booked attempts names it: that
     * try's worker died mid-run. The run is stopped if it still bills, booked in the job's failure
     * record (so the job's settle books it, whatever this try does) and its reservation settled at
     * what it billed, both in one write (settle first: a crash between books it twice in the budget,
     * never not at all). A provider that cannot be asked fails this try, for BullMQ to retry later:
     * paying again would leave the run unaccounted.
     */
    const reclaimOrphan = async (run: RemoteRun, failure: JobFailure | null, booked: Attempt[]): Promise<Attempt[]> => {
      if (booked.some((a) => a.ref === run.ref)) return booked;
      const orphan = await deps.chain.reclaim(run, payload.request).catch((err: unknown) => {
        // Unknown to the provider (another account, or long gone): nothing left to stop or look up.
        if (isBackendError(err) && err.status === 404) return null;
        throw err;
      });
      if (!orphan) {
        log.warn({ backend: run.backend, ref: run.ref }, 'a paid run a dead worker left cannot be asked for here; not booked');
        return booked;
      }
      const attempts = [...booked, orphan];
      const at = run.reservation;
      await Promise.all([
        at && deps.budgets ? deps.budgets.settle(at.guildId, at.month, at.field, orphan.costUsd) : undefined,
        deps.results.putFailure(payload.jobId, {
          code: failure?.code ?? 'all_backends_failed',
          message: failure?.message ?? failureText.all_backends_failed,
          attempts,
        }),
      ]);
      return attempts;
    };

    /** Attempts up to a paid result already made: whatever of ours fails after it, they are what the job is booked for. */
    let paidAttempts: Attempt[] | undefined;
    /**
     * After the backend returned, a member's cancel (not a shutdown, which lets the job finish) still
     * ends the job as cancelled with every attempt (`all`, earlier tries' included): the member was
     * told it would be, and a result returned now would be charged and posted. A cancel landing after
     * the last check is caught by the bot, which reads the cancel flag with the result's images.
     */
    const stopIfCancelled = (all: Attempt[]) => {
      if (controller.signal.aborted && controller.signal.reason !== shuttingDown) throw new ChainError('cancelled', all, false);
    };
    try {
      // One command before the backend is called: earlier tries' failure, a kept paid result, the cancel flag.
      const start = await deps.results.jobStart(payload.jobId, deps.cancelFlag ? [deps.cancelFlag(payload.jobId)] : []);
      const { failure, kept: resumed } = start;
      const cancelled = start.flags[0] === true;
      earlier = failure?.attempts ?? [];
      if (cancelled) controller.abort(new Error('cancelled by the member'));
      if (start.remoteRun && !resumed) earlier = await reclaimOrphan(start.remoteRun, failure, earlier);
      const inputs = await loadJobInputs(deps.results, payload.request, { maxPixels: deps.maxInputPixels ?? DEFAULT_INPUT_MAX_PIXELS });
      let backendId: string;
      let output: Omit<BackendOutput, 'images'>;
      let raw: Buffer[];
      let all: Attempt[];
      if (resumed) {
        ({ backend: backendId, attempts: all } = resumed.kept);
        output = resumed.kept;
        raw = resumed.images;
        paidAttempts = all;
        route = resumed.kept.route;
        log.info({ backend: backendId }, 'resuming from the paid result an earlier try kept');
      } else {
        const ran = await runChain(inputs);
        backendId = ran.backend.id;
        ({ images: raw, ...output } = ran.output);
        all = [...earlier, ...ran.attempts];
        if (ran.backend.capabilities.paid) {
          // Paid for: kept before anything of ours can fail, so a later try resumes from it instead of paying again.
          paidAttempts = all;
          await deps.results.keepPaid(
            payload.jobId,
            { ...output, backend: backendId, ...(route ? { route } : {}), attempts: all, images: raw.length },
            raw,
          );
        }
      }
      stopIfCancelled(all);
      // Inpaint: back to the original size, every pixel outside the mask exactly the original's.
      const paste = inputs.paste;
      const images = paste ? await Promise.all(raw.map((img) => cpu.run('pasteBack', paste.original, paste.maskFull, img))) : raw;
      await screen(deps, payload, images, all, log);
      stopIfCancelled(all);
      const keys = images.map((_, i) => deps.results.imageKey(payload.jobId, i));
      const entries: (readonly [string, Buffer])[] = keys.map((k, i) => [k, images[i]!] as const);
      const gridKey = images.length > 1 ? deps.results.gridKey(payload.jobId) : undefined;
      if (gridKey) entries.push([gridKey, await cpu.run('makeGrid', images)]);
      await deps.results.putMany(entries);
      const result: JobResult = {
        backend: backendId,
        seed: output.seed,
        width: paste?.original.width ?? payload.request.width,
        height: paste?.original.height ?? payload.request.height,
        imageKeys: keys,
        ...(gridKey ? { gridKey } : {}),
        runMs: performance.now() - started,
        costUsd: all.reduce((s, a) => s + a.costUsd, 0),
        attempts: all,
        ...(output.model ? { model: output.model } : {}),
        ...(output.sampler ? { sampler: output.sampler.slice(0, 100) } : {}),
        ...(output.steps !== undefined ? { steps: output.steps } : {}),
        ...(output.guidance !== undefined ? { guidance: output.guidance } : {}),
        ...(route ? { route: { reason: route.reason, backend: route.backend } } : {}),
      };
      stopIfCancelled(all);
      if (payload.request.inputKeys)
        await deps.results.forgetInputs(Object.values(payload.request.inputKeys).filter((k): k is string => typeof k === 'string'));
      log.info({ backend: backendId, ms: Math.round(result.runMs), cost: result.costUsd }, 'job generated');
      return result;
    } catch (err) {
      if (!(err instanceof ChainError)) {
        // Our own failure after a paid result: BullMQ's next try resumes from the kept result; if
        // there is none, the failure record still brings the paid attempts to the ledger.
        if (paidAttempts) {
          log.warn({ err }, 'failed after a paid result; it is kept for the next try');
          await deps.results
            .putFailure(payload.jobId, { code: 'all_backends_failed', message: failureText.all_backends_failed, attempts: paidAttempts })
            .catch((e: unknown) => log.warn({ err: e }, 'could not record the paid attempts'));
        }
        throw err;
      }
      // The chain's own errors carry this try's attempts, none succeeded; ours after it returned (the
      // classifier, a cancel) carry the whole list, its success included.
      const attempts = err.attempts.some((a) => a.outcome === 'succeeded') ? err.attempts : [...earlier, ...err.attempts];
      if (deps.shutdown?.aborted && err.code === 'cancelled' && token) {
        // Handed back on shutdown: straight back to the queue, no attempt used, no stall wait.
        await deps.results.putFailure(payload.jobId, { code: 'all_backends_failed', message: 'handed back', attempts });
        await job.moveToDelayed(Date.now(), token);
        throw new DelayedError();
      }
      if (deps.handBack && HANDED_BACK_CODES.has(err.code)) {
        await deps.results.putFailure(payload.jobId, { code: 'handed_back', message: failureText.handed_back, attempts });
        log.warn({ code: err.code }, 'no own box could run the job; handed back');
        throw new UnrecoverableError('handed_back');
      }
      await deps.results.putFailure(payload.jobId, { code: err.code, message: err.userMessage, attempts });
      const lastTry = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      log.warn({ code: err.code, retryable: err.retryable, lastTry }, 'chain failed');
      if (err.retryable && !lastTry) throw new Error(err.message);
      throw new UnrecoverableError(err.code);
    } finally {
      deps.running?.delete(payload.jobId);
      deps.shutdown?.removeEventListener('abort', onShutdown);
    }
  };
}
