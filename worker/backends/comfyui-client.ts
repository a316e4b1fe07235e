import type { z } from 'zod';
import { BackendError, isUserError } from '../../core/errors.js';
import { OUTPUT_LIMITS } from '../../core/image-limits.js';
import { readImageBody } from '../../core/io/attachments.js';
import type { ComfyGraph } from './comfyui-graph.js';
import {
  type ComfyHistoryEntry,
  type ComfyImageRef,
  checkpointInfoSchema,
  describePromptError,
  historySchema,
  promptErrorSchema,
  promptResponseSchema,
  queueSchema,
  safeJson,
  systemStatsSchema,
  uploadResponseSchema,
} from './comfyui-schemas.js';
import { describeZodError, mapFetchError, mapHttpStatus } from './http.js';

interface SendOptions {
  method?: 'GET' | 'POST';
  json?: unknown;
  form?: FormData;
  /** Caller's signal: aborted means cancelled (or its BackendError reason). */
  signal?: AbortSignal;
  timeoutMs: number;
  /** An image body: read under this byte cap and refused unless its first bytes are an image. */
  imageMaxBytes?: number;
}

interface Reply {
  status: number;
  body: Buffer;
  retryAfter: string | null;
  what: string;
}

/**
 * ComfyUI's HTTP API, every failure a BackendError (network and status mapping shared with the
 * other backends through http.ts; every JSON body checked with zod).
 */
export function createComfyClient(backend: string, baseUrl: string) {
  const base = baseUrl.replace(/\/+$/, '');

  async function send(path: string, o: SendOptions): Promise<Reply> {
    const method = o.method ?? (o.json === undefined && o.form === undefined ? 'GET' : 'POST');
    const what = `${method} ${path.split('?')[0]}`;
    const timeout = AbortSignal.timeout(o.timeoutMs);
    const headers: Record<string, string> = o.json === undefined ? {} : { 'content-type': 'application/json' };
    try {
      const res = await fetch(`${base}${path}`, {
        method,
        headers,
        body: o.form ?? (o.json === undefined ? undefined : JSON.stringify(o.json)),
        signal: o.signal ? AbortSignal.any([o.signal, timeout]) : timeout,
      });
      // The whole body inside the try: a reset mid-body is a network failure too.
      const body =
        o.imageMaxBytes !== undefined && res.ok ? await readImageBody(res, o.imageMaxBytes) : Buffer.from(await res.arrayBuffer());
      return { status: res.status, body, retryAfter: res.headers.get('retry-after'), what };
    } catch (err) {
      if (isUserError(err))
        throw new BackendError(backend, 'bad-response', `${what} refused: ${err.userMessage}`, { cause: err, retryable: false });
      throw mapFetchError(backend, err, { signal: o.signal, timeout, timeoutMs: o.timeoutMs, what });
    }
  }

  function ok(r: Reply): Reply {
    if (r.status < 200 || r.status > 299)
      throw mapHttpStatus(backend, r.status, r.body.toString('utf8'), { retryAfter: r.retryAfter, what: r.what });
    return r;
  }

  function parse<T>(r: Reply, schema: z.ZodType<T>): T {
    const json = safeJson(r.body.toString('utf8'));
    if (json === undefined)
      throw new BackendError(backend, 'bad-response', `${r.what}: HTTP ${r.status} with a body that is not JSON`, {
        status: r.status,
        retryable: true,
      });
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      throw new BackendError(backend, 'bad-response', `${r.what}: unexpected response (${describeZodError(parsed.error)})`, {
        retryable: true,
        cause: parsed.error,
      });
    }
    return parsed.data;
  }

  return {
    /** Queues a graph for the socket `clientId`. A validation refusal (400) is 'rejected', naming what ComfyUI said. */
    async postPrompt(graph: ComfyGraph, clientId: string, timeoutMs: number): Promise<{ promptId: string; number?: number }> {
      const r = await send('/prompt', { json: { prompt: graph, client_id: clientId }, timeoutMs });
      if (r.status === 400) {
        const parsed = promptErrorSchema.safeParse(safeJson(r.body.toString('utf8')));
        if (parsed.success) {
          throw new BackendError(backend, 'rejected', `prompt refused: ${describePromptError(parsed.data)}`, {
            status: 400,
            retryable: false,
          });
        }
      }
      const body = parse(ok(r), promptResponseSchema);
      return { promptId: body.prompt_id, ...(body.number === undefined ? {} : { number: body.number }) };
    },

    /** Uploads a PNG to input/ and returns the name to put in LoadImage (`subfolder/name` if any). */
    async upload(name: string, png: Buffer, signal: AbortSignal, timeoutMs: number): Promise<string> {
      const form = new FormData();
      form.append('image', new Blob([new Uint8Array(png)], { type: 'image/png' }), name);
      form.append('type', 'input');
      form.append('subfolder', '');
      form.append('overwrite', 'true');
      const body = parse(ok(await send('/upload/image', { form, signal, timeoutMs })), uploadResponseSchema);
      return body.subfolder ? `${body.subfolder}/${body.name}` : body.name;
    },

    /** The history entry, or undefined while the prompt is not finished (`{}`). */
    async history(promptId: string, signal: AbortSignal, timeoutMs: number): Promise<ComfyHistoryEntry | undefined> {
      const body = parse(ok(await send(`/history/${encodeURIComponent(promptId)}`, { signal, timeoutMs })), historySchema);
      return body[promptId];
    },

    /** The bytes of an output file. */
    async view(ref: ComfyImageRef, signal: AbortSignal, timeoutMs: number): Promise<Buffer> {
      const q = new URLSearchParams({ filename: ref.filename, subfolder: ref.subfolder, type: ref.type });
      return ok(await send(`/view?${q.toString()}`, { signal, timeoutMs, imageMaxBytes: OUTPUT_LIMITS.maxBytes })).body;
    },

    /** Ids running and waiting on the server. */
    async queue(timeoutMs: number): Promise<{ running: string[]; pending: string[] }> {
      const body = parse(ok(await send('/queue', { timeoutMs })), queueSchema);
      return { running: body.queue_running.map((e) => e[1]), pending: body.queue_pending.map((e) => e[1]) };
    },

    /** Interrupts `promptId` if it is the one running (recent builds; older ones interrupt whatever runs). */
    async interrupt(promptId: string, timeoutMs: number): Promise<void> {
      ok(await send('/interrupt', { json: { prompt_id: promptId }, timeoutMs }));
    },

    /** Removes a prompt that has not started yet. */
    async deleteQueued(promptId: string, timeoutMs: number): Promise<void> {
      ok(await send('/queue', { json: { delete: [promptId] }, timeoutMs }));
    },

    async systemStats(signal: AbortSignal | undefined, timeoutMs: number) {
      return parse(ok(await send('/system_stats', { ...(signal ? { signal } : {}), timeoutMs })), systemStatsSchema);
    },

    /** Checkpoint files the server can load. */
    async checkpoints(signal: AbortSignal | undefined, timeoutMs: number): Promise<string[]> {
      const body = parse(
        ok(await send('/object_info/CheckpointLoaderSimple', { ...(signal ? { signal } : {}), timeoutMs })),
        checkpointInfoSchema,
      );
      return body.CheckpointLoaderSimple.input.required.ckpt_name[0];
    },
  };
}

export type ComfyClient = ReturnType<typeof createComfyClient>;
