import { randomUUID } from 'node:crypto';
import sharp from 'sharp';
import WebSocket from 'ws';
import { z } from 'zod';
import { BackendError } from '../../core/errors.js';
import type { Logger } from '../../core/io/logger.js';
import type { BackendJob, BackendOutput, HealthStatus, ImageBackend, RunContext } from './backend.js';
import { buildGraph, SAVE_NODE } from './comfyui-graph.js';
import { createJsonClient, FifoLock, LockWaitAborted, mapFetchError, mapHttpStatus } from './http.js';

export interface ComfyUIOptions {
  id: string;
  url: string;
  /** Checkpoint file name put in the graph's CheckpointLoaderSimple. */
  checkpoint: string;
  /** No websocket message for this long while our prompt runs means the server is dead or hung. */
  progressTimeoutMs: number;
  log: Logger;
}

const promptResponse = z.object({ prompt_id: z.string(), node_errors: z.record(z.string(), z.unknown()).optional() });
const imageRef = z.object({ filename: z.string(), subfolder: z.string().default(''), type: z.string().default('output') });
const historyEntry = z.object({
  outputs: z.record(z.string(), z.object({ images: z.array(imageRef).optional() }).loose()),
  status: z.object({ status_str: z.string().optional(), completed: z.boolean().optional() }).loose().optional(),
});
const uploadResponse = z.object({ name: z.string(), subfolder: z.string().default('') });
const wsMessage = z.object({ type: z.string(), data: z.record(z.string(), z.unknown()) });

const CAPABILITIES = { kinds: ['txt2img', 'inpaint'], maxPixels: 2048 * 2048, maxCount: 4, negativePrompt: true, seed: true, previews: true, paid: false } as const;

/**
 * ComfyUI: POST /prompt with an SDXL API-format graph, progress and previews from the /ws socket,
 * results from /history and /view, cancel through /interrupt or by deleting the queued prompt.
 */
export function createComfyUIBackend(o: ComfyUIOptions): ImageBackend {
  const base = o.url.replace(/\/+$/, '');
  const client = createJsonClient({ backend: o.id, baseUrl: base });
  const lock = new FifoLock();

  async function upload(name: string, png: Buffer, signal: AbortSignal): Promise<string> {
    const form = new FormData();
    form.append('image', new Blob([new Uint8Array(png)], { type: 'image/png' }), name);
    form.append('type', 'input');
    form.append('overwrite', 'true');
    let res: Response;
    try {
      res = await fetch(`${base}/upload/image`, { method: 'POST', body: form, signal });
    } catch (err) {
      throw mapFetchError(o.id, err, { signal, what: 'POST /upload/image' });
    }
    const text = await res.text();
    if (!res.ok) throw mapHttpStatus(o.id, res.status, text, { what: 'POST /upload/image' });
    const parsed = uploadResponse.safeParse(JSON.parse(text));
    if (!parsed.success) throw new BackendError(o.id, 'bad-response', 'upload response without a name');
    return parsed.data.subfolder ? `${parsed.data.subfolder}/${parsed.data.name}` : parsed.data.name;
  }

  async function view(ref: z.infer<typeof imageRef>, signal: AbortSignal): Promise<Buffer> {
    const q = new URLSearchParams({ filename: ref.filename, subfolder: ref.subfolder, type: ref.type });
    try {
      const res = await fetch(`${base}/view?${q}`, { signal });
      if (!res.ok) throw mapHttpStatus(o.id, res.status, await res.text(), { what: 'GET /view' });
      return Buffer.from(await res.arrayBuffer());
    } catch (err) {
      throw mapFetchError(o.id, err, { signal, what: 'GET /view' });
    }
  }

  /** Waits for our prompt to finish on the socket, reporting progress; rejects on error, silence or cancel. */
  function watch(ws: WebSocket, promptId: () => string | undefined, ctx: RunContext): Promise<void> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout;
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => fail(new BackendError(o.id, 'timeout', `no message from ComfyUI for ${o.progressTimeoutMs} ms`)), o.progressTimeoutMs);
      };
      const fail = (err: BackendError) => {
        clearTimeout(timer);
        reject(err);
      };
      arm();
      ws.on('message', (raw: WebSocket.RawData, isBinary: boolean) => {
        arm();
        if (isBinary) {
          const buf = Buffer.isBuffer(raw) ? raw : Buffer.from(raw as ArrayBuffer);
          if (buf.length > 8 && buf.readUInt32BE(0) === 1) ctx.onProgress({ step: 0, total: 0, fraction: 0, preview: buf.subarray(8) });
          return;
        }
        const parsed = wsMessage.safeParse(JSON.parse(String(raw)));
        if (!parsed.success) return;
        const { type, data } = parsed.data;
        const mine = data.prompt_id === undefined || data.prompt_id === promptId();
        if (!mine) return;
        if (type === 'progress') {
          const value = Number(data.value);
          const max = Number(data.max);
          ctx.onProgress({ step: value, total: max, fraction: max > 0 ? value / max : 0 });
        } else if (type === 'execution_error') {
          fail(new BackendError(o.id, 'unavailable', `execution error: ${String(data.exception_message ?? 'unknown').slice(0, 200)}`));
        } else if (type === 'execution_interrupted') {
          fail(new BackendError(o.id, 'cancelled', 'interrupted', { retryable: false }));
        } else if ((type === 'executing' && data.node === null && data.prompt_id === promptId()) || type === 'execution_success') {
          clearTimeout(timer);
          resolve();
        }
      });
      ws.on('close', () => fail(new BackendError(o.id, 'unavailable', 'websocket closed while the prompt ran')));
      ws.on('error', () => fail(new BackendError(o.id, 'unavailable', 'websocket error')));
    });
  }

  async function run(job: BackendJob, ctx: RunContext): Promise<BackendOutput> {
    const r = job.request;
    const started = performance.now();
    const clientId = randomUUID();
    const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/ws?clientId=${clientId}`);
    ws.on('error', () => undefined);
    let promptId: string | undefined;
    const onAbort = () => {
      if (!promptId) return;
      // Interrupt it if it runs; delete it if it is still queued.
      void client.raw('/interrupt', { body: { prompt_id: promptId }, timeoutMs: 3000 }).catch(() => undefined);
      void client.raw('/queue', { body: { delete: [promptId] }, timeoutMs: 3000 }).catch(() => undefined);
    };
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    try {
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', (err) => reject(mapFetchError(o.id, err, { what: 'websocket' })));
      });
      const cancelled = new Promise<never>((_, reject) =>
        ctx.signal.addEventListener('abort', () => reject(new BackendError(o.id, 'cancelled', 'cancelled', { retryable: false })), { once: true }),
      );
      cancelled.catch(() => undefined);
      let uploaded: { image: string; mask: string } | undefined;
      if (r.kind === 'inpaint') {
        if (!job.image || !job.mask) throw new BackendError(o.id, 'rejected', 'inpaint job without image or mask', { retryable: false });
        uploaded = {
          image: await upload(`imagebot-${job.jobId}-image.png`, job.image, ctx.signal),
          mask: await upload(`imagebot-${job.jobId}-mask.png`, job.mask, ctx.signal),
        };
      }
      const done = watch(ws, () => promptId, ctx);
      done.catch(() => undefined);
      const posted = await client.json('/prompt', promptResponse, { body: { prompt: buildGraph(r, o.checkpoint, uploaded), client_id: clientId }, signal: ctx.signal, timeoutMs: 15_000 });
      promptId = posted.prompt_id;
      await Promise.race([done, cancelled]);
      const history = await client.json(`/history/${promptId}`, z.record(z.string(), historyEntry), { timeoutMs: 15_000 });
      const entry = history[promptId];
      const refs = entry?.outputs[SAVE_NODE]?.images ?? [];
      if (refs.length < r.count) throw new BackendError(o.id, 'bad-response', `returned ${refs.length} of ${r.count} images`);
      const images = await Promise.all(refs.slice(0, r.count).map((ref) => view(ref, ctx.signal)));
      for (const img of images) {
        const meta = await sharp(img).metadata().catch(() => null);
        if (!meta?.format) throw new BackendError(o.id, 'bad-response', 'returned an image that does not decode');
        if (meta.width !== r.width || meta.height !== r.height) {
          throw new BackendError(o.id, 'bad-response', `returned ${meta.width}×${meta.height}, asked ${r.width}×${r.height}`);
        }
      }
      const pngs = await Promise.all(images.map(async (b) => ((await sharp(b).metadata()).format === 'png' ? b : sharp(b).png().toBuffer())));
      return { images: pngs, seed: r.seed, billedSeconds: (performance.now() - started) / 1000, billedImages: pngs.length };
    } catch (err) {
      if (ctx.signal.aborted) throw new BackendError(o.id, 'cancelled', 'cancelled', { retryable: false });
      if (err instanceof BackendError && err.kind === 'timeout') onAbort();
      throw err instanceof BackendError ? err : mapFetchError(o.id, err, { what: 'ComfyUI job' });
    } finally {
      ctx.signal.removeEventListener('abort', onAbort);
      ws.terminate();
    }
  }

  return {
    id: o.id,
    family: 'comfyui',
    capabilities: CAPABILITIES,
    get inFlight() {
      return lock.inFlight;
    },
    async health(signal?: AbortSignal): Promise<HealthStatus> {
      const t0 = performance.now();
      try {
        const stats = (await client.raw('/system_stats', { signal, timeoutMs: 3000 })) as { devices?: { name?: string; vram_free?: number }[] };
        const dev = stats.devices?.[0];
        const detail = dev ? `${dev.name ?? 'GPU'}, ${((dev.vram_free ?? 0) / 2 ** 30).toFixed(1)} GB free` : 'up';
        return { ok: true, detail, latencyMs: performance.now() - t0 };
      } catch (err) {
        return { ok: false, detail: err instanceof Error ? err.message : String(err), latencyMs: performance.now() - t0 };
      }
    },
    async generate(job, ctx) {
      let release: () => void;
      try {
        release = await lock.acquire(ctx.signal);
      } catch (err) {
        if (err instanceof LockWaitAborted) throw new BackendError(o.id, 'cancelled', 'cancelled while waiting for the server', { retryable: false });
        throw err;
      }
      try {
        return await run(job, ctx);
      } finally {
        release();
      }
    },
  };
}
