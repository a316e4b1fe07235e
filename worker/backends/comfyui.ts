import { randomUUID } from 'node:crypto';
import { BackendError } from '../../core/errors.js';
import type { GenerationRequest } from '../../core/generation.js';
import type { Logger } from '../../core/io/logger.js';
import { BUILTIN_PRESETS, type PresetCatalog } from '../../core/presets.js';
import type { BackendCapabilities, BackendJob, BackendOutput, HealthStatus, ImageBackend, RunContext, RunSettings } from './backend.js';
import { backendErrors, healthReporter, isImagePass, ownSettings, presetSettings } from './backend.js';
import { type ComfyClient, createComfyClient } from './comfyui-client.js';
import {
  buildGraph,
  COMFY_SAMPLER,
  COMFY_SCHEDULER,
  type ComfyRun,
  FILENAME_PREFIX,
  SAVE_NODE,
  type UploadedInputs,
} from './comfyui-graph.js';
import type { ComfyHistoryEntry } from './comfyui-schemas.js';
import { ComfySocket } from './comfyui-ws.js';
import { FifoLock } from './http.js';
import { outputPng } from './output-image.js';

/** Settings for one ComfyUI server. */
export interface ComfyUIOptions {
  /** e.g. `comfyui`. */
  id: string;
  /** Server base, e.g. `http://gpu-box:8188`. */
  url: string;
  /** Checkpoint file name for CheckpointLoaderSimple, e.g. `sd_xl_base_1.0.safetensors`. */
  checkpoint: string;
  /** No websocket message for this long while our prompt runs means the server is hung. */
  progressTimeoutMs: number;
  /** GET /queue unanswered this long while our prompt runs: the server is dead (default 2 s). */
  deadAfterMs?: number;
  /** How often /queue is asked while our prompt runs (default 500 ms). */
  pollIntervalMs?: number;
  /** Presets in force (default the built-ins). */
  presets?: PresetCatalog;
  /** The server's identity (its normalised URL's id), shared by every worker configured with it. */
  boxId?: string;
  /** Hard cap on one job, queue wait included (default 10 min). */
  requestTimeoutMs?: number;
  log: Logger;
}

const COMFYUI_CAPABILITIES: BackendCapabilities = {
  kinds: ['txt2img', 'inpaint', 'img2img', 'upscale'],
  maxPixels: 2048 * 2048,
  maxCount: 4,
  negativePrompt: true,
  seed: true,
  previews: true,
  paid: false,
};

/** Timeout of the small control calls (interrupt, dequeue, queue, health). */
const CONTROL_MS = 3000;

/** Rejects with the signal's reason when it aborts; dispose() detaches. */
function untilAborted(signal: AbortSignal): { promise: Promise<never>; dispose: () => void } {
  let onAbort: () => void = () => undefined;
  const promise = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason as unknown);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  promise.catch(() => undefined);
  return { promise, dispose: () => signal.removeEventListener('abort', onAbort) };
}

/** `cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync` → `NVIDIA GeForce RTX 4090`. */
function gpuName(device: string): string {
  return /^\w+:\d+\s+(.+?)(?:\s+:\s+\S+)?$/.exec(device)?.[1] ?? device;
}

/**
 * ComfyUI: an SDXL API-format graph through POST /prompt, progress and previews from our own
 * `/ws?clientId=` socket, results from /history and /view. One job at a time per server (FIFO,
 * in-process); a silent socket for progressTimeoutMs is a 'timeout'; cancelling interrupts our
 * running prompt or deletes it from the server's queue.
 */
export function createComfyUIBackend(o: ComfyUIOptions): ImageBackend {
  const client = createComfyClient(o.id, o.url);
  // One job at a time in this process as well: the lease (worker/boxes) serialises the workers.
  const lock = new FifoLock();
  const deadAfterMs = o.deadAfterMs ?? 2000;
  const pollMs = o.pollIntervalMs ?? 500;
  const presets = o.presets ?? BUILTIN_PRESETS;
  const requestTimeoutMs = o.requestTimeoutMs ?? 10 * 60_000;
  const httpMs = Math.min(30_000, requestTimeoutMs);
  const log = o.log;

  const errors = backendErrors(o.id, { badResponseRetryable: true });
  const { cancelled, badResponse, rejected, leaseLost } = errors;

  function settingsFor(r: GenerationRequest): RunSettings | { refused: string } {
    const s = presetSettings(presets, 'comfyui', r);
    if ('refused' in s) return s;
    if (s.preset.needsCheckpoint && !s.preset.checkpoint)
      return { refused: `preset "${r.preset}" needs its own checkpoint on the server; name one in PRESETS_FILE` };
    return s;
  }

  function runOf(s: RunSettings): ComfyRun {
    return {
      checkpoint: s.preset.checkpoint ?? o.checkpoint,
      steps: s.steps,
      guidance: s.guidance,
      sampler: s.preset.sampler ?? COMFY_SAMPLER,
      scheduler: s.preset.scheduler ?? COMFY_SCHEDULER,
    };
  }

  /**
   * Asks /queue every pollMs while our prompt runs: the websocket may rightly stay silent through a
   * long node, but a server that stops answering its cheapest endpoint for deadAfterMs is dead.
   */
  function watchAlive(stop: AbortSignal, holds: () => Promise<boolean>, onDead: (err: BackendError) => void): void {
    let lastAnswer = performance.now();
    let lastError = 'silent';
    /** Waiting on the lease (Redis), not on the server: that wait is not the server's silence. */
    let checkingLease = false;
    const dog = setInterval(
      () => {
        if (stop.aborted || checkingLease || performance.now() - lastAnswer <= deadAfterMs) return;
        clearInterval(dog);
        onDead(
          new BackendError(o.id, 'unavailable', `no answer from /queue for ${deadAfterMs} ms (${lastError}); server taken for dead`, {
            opensCircuit: true,
          }),
        );
      },
      Math.max(10, Math.min(pollMs, deadAfterMs / 5)),
    );
    stop.addEventListener('abort', () => clearInterval(dog), { once: true });
    void (async () => {
      while (!stop.aborted) {
        await new Promise((r) => setTimeout(r, pollMs));
        if (stop.aborted) return;
        checkingLease = true;
        const asked = performance.now();
        let ours: boolean;
        try {
          ours = await holds();
        } finally {
          checkingLease = false;
          lastAnswer += performance.now() - asked;
        }
        if (!ours) return;
        try {
          await client.queue(deadAfterMs);
          lastAnswer = performance.now();
        } catch (err) {
          lastError = err instanceof Error ? err.message : String(err);
        }
      }
    })();
  }

  /** Interrupts our prompt if it runs, else deletes it from the queue (and interrupts if it started meanwhile). */
  async function takeBack(c: ComfyClient, promptId: string, started: boolean): Promise<void> {
    try {
      if (started) return await c.interrupt(promptId, CONTROL_MS);
      await c.deleteQueued(promptId, CONTROL_MS);
      if ((await c.queue(CONTROL_MS)).running.includes(promptId)) await c.interrupt(promptId, CONTROL_MS);
    } catch (err) {
      log.debug({ err, promptId }, 'could not take our prompt back from the server');
    }
  }

  /** The finished history entry; it can trail `execution_success` by a moment. */
  async function finishedEntry(promptId: string, signal: AbortSignal): Promise<ComfyHistoryEntry> {
    for (let attempt = 0; attempt < 50; attempt++) {
      const entry = await client.history(promptId, signal, httpMs);
      if (entry) return entry;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw badResponse(`prompt ${promptId} finished but has no history`);
  }

  async function collect(entry: ComfyHistoryEntry, r: GenerationRequest, signal: AbortSignal): Promise<Buffer[]> {
    if (entry.status?.status_str === 'error') {
      const failed = entry.status.messages?.find((m) => m[0] === 'execution_error' || m[0] === 'execution_interrupted');
      if (failed?.[0] === 'execution_error') throw new BackendError(o.id, 'unavailable', 'execution error (see the server log)');
      throw badResponse(`prompt ended with status error${failed ? ` (${failed[0]})` : ''}`);
    }
    const refs = entry.outputs[SAVE_NODE]?.images ?? [];
    if (refs.length !== r.count) throw badResponse(`returned ${refs.length} of ${r.count} images`);
    return Promise.all(
      refs.map(async (ref, i) =>
        outputPng(errors, await client.view(ref, signal, httpMs), i + 1, { width: r.width, height: r.height, fit: 'exact' }),
      ),
    );
  }

  /** Checks a job's input images before anything is sent, so a malformed job costs no socket. */
  function checkInputs(job: BackendJob): void {
    const { kind } = job.request;
    if (kind === 'inpaint' && (!job.image || !job.mask)) throw rejected('inpaint job without a prepared image and mask');
    if (isImagePass(kind) && !job.image) throw rejected(`${kind} job without its input image`);
  }

  /** Uploads the job's input image (and inpaint mask) under fresh names; undefined for txt2img. */
  async function upload(job: BackendJob, signal: AbortSignal): Promise<UploadedInputs | undefined> {
    if (job.request.kind === 'txt2img' || !job.image) return undefined;
    const tag = `${FILENAME_PREFIX}-${job.jobId.replace(/[^\w-]/g, '_').slice(0, 40)}-${randomUUID().slice(0, 8)}`;
    const image = await client.upload(`${tag}-image.png`, job.image, signal, httpMs);
    if (job.request.kind !== 'inpaint' || !job.mask) return { image };
    const mask = await client.upload(`${tag}-mask.png`, job.mask, signal, httpMs);
    return { image, mask };
  }

  /** One job while holding the lock; `later` receives clean-up the lock must wait for. */
  async function run(job: BackendJob, ctx: RunContext, later: (p: Promise<void>) => void): Promise<BackendOutput> {
    const r = job.request;
    const settings = job.settings ?? ownSettings(settingsFor, r);
    const c = runOf(settings);
    const t0 = performance.now();
    const holds = () => (ctx.lease ? ctx.lease.holds().catch(() => false) : Promise.resolve(true));
    /** Asked before every request to the server: a server another job holds now is not ours to talk to. */
    const mine = async () => {
      if (!(await holds())) throw leaseLost();
    };
    // Aborted with the BackendError the caller should see; the HTTP calls pass that reason through.
    const abandon = new AbortController();
    const onCancel = () => {
      const reason: unknown = ctx.signal.reason;
      abandon.abort(reason instanceof BackendError ? reason : cancelled('cancelled during generation'));
    };
    ctx.signal.addEventListener('abort', onCancel, { once: true });
    const stopAlive = new AbortController();
    const deadline = setTimeout(
      () => abandon.abort(new BackendError(o.id, 'timeout', `no result after ${requestTimeoutMs} ms`)),
      requestTimeoutMs,
    );
    let socket: ComfySocket | undefined;
    let promptId: string | undefined;
    try {
      const clientId = randomUUID();
      await mine();
      // Open before posting: ComfyUI sends a prompt's messages only to the socket of its client_id.
      socket = await ComfySocket.open(o.id, o.url, clientId, {
        signal: abandon.signal,
        handshakeTimeoutMs: Math.min(Math.max(deadAfterMs, 1000), requestTimeoutMs),
      });
      await mine();
      const uploaded = await upload(job, abandon.signal);
      if (abandon.signal.aborted) throw abandon.signal.reason;
      await mine();
      // Not abortable: once sent the prompt may be queued, and only its id lets us take it back.
      const posted = await client.postPrompt(buildGraph(r, c, uploaded), clientId, httpMs);
      const id = posted.promptId;
      promptId = id;
      watchAlive(stopAlive.signal, holds, (err) => abandon.abort(err));
      log.debug(
        { jobId: job.jobId, promptId: id, kind: r.kind, width: r.width, height: r.height, count: r.count, steps: r.steps },
        'prompt queued',
      );
      if (abandon.signal.aborted) throw abandon.signal.reason;
      const progress = (step: number, total: number, preview?: Buffer) =>
        ctx.onProgress({ step, total, fraction: total > 0 ? Math.min(1, step / total) : 0, ...(preview ? { preview } : {}) });
      const stop = untilAborted(abandon.signal);
      try {
        await Promise.race([
          socket.follow({
            promptId: id,
            progressTimeoutMs: o.progressTimeoutMs,
            onProgress: (step, total) => progress(step, total),
            onPreview: (image, step, total) => progress(step, total, Buffer.from(image)),
            queueState: async () => {
              await mine();
              const q = await client.queue(CONTROL_MS);
              return q.running.includes(id) ? 'running' : q.pending.includes(id) ? 'pending' : 'gone';
            },
          }),
          stop.promise,
        ]);
      } finally {
        stop.dispose();
      }
      stopAlive.abort();
      await mine();
      const images = await collect(await finishedEntry(id, abandon.signal), r, abandon.signal);
      const seconds = (performance.now() - t0) / 1000;
      log.debug({ jobId: job.jobId, promptId: id, seconds }, 'prompt done');
      return {
        images,
        seed: r.seed,
        billedSeconds: seconds,
        billedImages: images.length,
        model: { name: c.checkpoint },
        sampler: `${c.sampler} (${c.scheduler})`,
        steps: c.steps,
        guidance: c.guidance,
      };
    } catch (err) {
      let e =
        err instanceof BackendError ? err : badResponse(`unexpected failure: ${err instanceof Error ? err.message : String(err)}`, err);
      // Not there at all (refused, reset): the circuit opens at once.
      if (!promptId && e.kind === 'unavailable' && e.status === undefined && !e.opensCircuit)
        e = new BackendError(o.id, 'unavailable', e.message.replace(`${o.id}: `, ''), { cause: e, opensCircuit: true });
      // A server that is another job's now, or that stopped answering, is not sent a take-back.
      const touch = !(e.kind === 'busy' && !e.retryable) && !(e.opensCircuit && e.kind === 'unavailable');
      if (touch && promptId && socket && !socket.ended) {
        const started = socket.started;
        const pid = promptId;
        later(holds().then((ok) => (ok ? takeBack(client, pid, started) : undefined)));
      }
      if (e.kind !== 'cancelled')
        log.warn({ jobId: job.jobId, promptId, kind: e.kind, status: e.status, msg: e.message }, 'generation failed');
      throw e;
    } finally {
      stopAlive.abort();
      clearTimeout(deadline);
      ctx.signal.removeEventListener('abort', onCancel);
      socket?.close();
    }
  }

  return {
    id: o.id,
    family: 'comfyui',
    capabilities: COMFYUI_CAPABILITIES,
    ...(o.boxId ? { box: { id: o.boxId } } : {}),
    get inFlight() {
      return lock.inFlight;
    },
    settingsFor,
    async health(signal?: AbortSignal): Promise<HealthStatus> {
      const done = healthReporter();
      try {
        const [stats, checkpoints] = await Promise.all([
          client.systemStats(signal, CONTROL_MS),
          client.checkpoints(signal, CONTROL_MS).catch(() => undefined),
        ]);
        const dev = stats.devices[0];
        let detail = dev ? `${gpuName(dev.name)}, ${((dev.vram_free ?? 0) / 2 ** 30).toFixed(1)} GB free` : 'no GPU listed';
        if (checkpoints && !checkpoints.includes(o.checkpoint)) detail += `; checkpoint ${o.checkpoint} not listed`;
        return done(true, detail);
      } catch (err) {
        return done(false, err instanceof Error ? err.message : String(err));
      }
    },
    async generate(job, ctx) {
      let release: () => void;
      try {
        release = await lock.acquire(ctx.signal);
      } catch {
        throw cancelled('cancelled while waiting for the server');
      }
      let cleanup: Promise<void> = Promise.resolve();
      try {
        if (ctx.signal.aborted) throw cancelled('cancelled while waiting for the server');
        checkInputs(job);
        return await run(job, ctx, (p) => (cleanup = p));
      } finally {
        // The next job waits until an abandoned prompt has been interrupted or dequeued.
        void cleanup.finally(release);
      }
    },
  };
}
