import WebSocket from 'ws';
import { BackendError } from '../../core/errors.js';
import { type ComfyWsType, parsePreviewFrame, safeJson, wsDataSchemas, wsEnvelopeSchema } from './comfyui-schemas.js';
import { describeZodError, mapFetchError } from './http.js';

type SocketEvent =
  | { kind: 'json'; type: string; data: Record<string, unknown> }
  | { kind: 'binary'; buf: Buffer }
  | { kind: 'closed'; code: number };

/** Where a prompt is on the server, as GET /queue says. */
export type QueueState = 'pending' | 'running' | 'gone';

export interface FollowOptions {
  promptId: string;
  /** Silence this long while our prompt runs means the server is dead or hung. */
  progressTimeoutMs: number;
  onProgress: (step: number, total: number) => void;
  onPreview: (image: Buffer, step: number, total: number) => void;
  /** Asked when nothing came for progressTimeoutMs before our prompt started: waiting behind other work is fine. */
  queueState: () => Promise<QueueState>;
}

/**
 * Our `/ws?clientId=…` connection. Opened before the prompt is posted so no message is missed;
 * frames that arrive before {@link ComfySocket.follow} is called are buffered and replayed.
 */
export class ComfySocket {
  private readonly buffer: SocketEvent[] = [];
  private listener: ((e: SocketEvent) => void) | undefined;
  private closedByUs = false;
  private stopFollowing: (() => void) | undefined;
  /** Our prompt has begun executing (as far as the socket or the queue told us). */
  started = false;
  /** The server reported our prompt over (done, failed or interrupted): nothing left to take back. */
  ended = false;

  private constructor(
    private readonly ws: WebSocket,
    private readonly backend: string,
  ) {
    ws.on('message', (raw: WebSocket.RawData, isBinary: boolean) => {
      if (isBinary) return this.push({ kind: 'binary', buf: Array.isArray(raw) ? Buffer.concat(raw) : Buffer.from(raw as ArrayBuffer) });
      const env = wsEnvelopeSchema.safeParse(safeJson(String(raw)));
      // A frame we cannot read is not ours to judge; the typed checks below catch what matters.
      if (env.success) this.push({ kind: 'json', type: env.data.type, data: env.data.data });
    });
    ws.on('close', (code: number) => {
      if (!this.closedByUs) this.push({ kind: 'closed', code });
    });
    ws.on('error', () => undefined);
  }

  /** Connects to `<base>/ws?clientId=…`; refused/reset → 'unavailable', abort → 'cancelled'. */
  static open(
    backend: string,
    baseUrl: string,
    clientId: string,
    o: { signal: AbortSignal; handshakeTimeoutMs: number },
  ): Promise<ComfySocket> {
    const url = new URL(`${baseUrl.replace(/\/+$/, '')}/ws`);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    url.searchParams.set('clientId', clientId);
    const ws = new WebSocket(url, { handshakeTimeout: o.handshakeTimeoutMs, perMessageDeflate: false });
    return new Promise((resolve, reject) => {
      const onAbort = () => ws.terminate();
      o.signal.addEventListener('abort', onAbort, { once: true });
      ws.once('open', () => {
        o.signal.removeEventListener('abort', onAbort);
        resolve(new ComfySocket(ws, backend));
      });
      ws.once('error', (err) => {
        o.signal.removeEventListener('abort', onAbort);
        ws.terminate();
        reject(mapFetchError(backend, err, { signal: o.signal, what: 'websocket /ws' }));
      });
    });
  }

  private push(e: SocketEvent): void {
    if (this.listener) this.listener(e);
    else this.buffer.push(e);
  }

  /**
   * Resolves when our prompt is done (`executing` node null, or `execution_success`); rejects with
   * 'unavailable' on execution_error or a dropped socket, 'timeout' on silence, 'bad-response' on a
   * malformed frame or an interrupt we did not send.
   */
  follow(o: FollowOptions): Promise<void> {
    const { backend } = this;
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      let step = 0;
      let total = 0;
      let timer: NodeJS.Timeout | undefined;
      const settle = (err?: BackendError, over = true) => {
        if (settled) return;
        settled = true;
        this.ended = over;
        clearTimeout(timer);
        this.listener = undefined;
        if (err) reject(err);
        else resolve();
      };
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => void onSilence(), o.progressTimeoutMs);
      };
      const onSilence = async () => {
        if (!this.started) {
          let state: QueueState;
          try {
            state = await o.queueState();
          } catch (err) {
            return settle(err instanceof BackendError ? err : new BackendError(backend, 'unavailable', String(err)), false);
          }
          if (settled) return;
          if (state !== 'gone') {
            // Still waiting behind other work, or running without having told us yet: give it another window.
            this.started = state === 'running';
            return arm();
          }
        }
        const where = this.started ? (total > 0 ? `at step ${step}/${total}` : 'after it started') : 'and it is not in the queue';
        settle(
          new BackendError(backend, 'timeout', `no message from ComfyUI for ${o.progressTimeoutMs} ms ${where}`, { opensCircuit: true }),
          false,
        );
      };

      const handle = (e: SocketEvent) => {
        if (settled) return;
        if (e.kind === 'closed')
          return settle(
            new BackendError(backend, 'unavailable', `websocket closed (code ${e.code}) before our prompt finished`, {
              opensCircuit: true,
            }),
            false,
          );
        if (e.kind === 'binary') {
          const preview = parsePreviewFrame(e.buf);
          if (!preview || !this.started || (preview.promptId !== undefined && preview.promptId !== o.promptId)) return;
          arm();
          o.onPreview(preview.image, step, total);
          return;
        }
        if (!(e.type in wsDataSchemas)) return;
        const type = e.type as ComfyWsType;
        const parsed = wsDataSchemas[type].safeParse(e.data);
        if (!parsed.success)
          return settle(new BackendError(backend, 'bad-response', `malformed ${type} message (${describeZodError(parsed.error)})`), false);
        const d = parsed.data as { prompt_id?: string } & Record<string, unknown>;
        if (d.prompt_id !== undefined && d.prompt_id !== o.promptId) return;
        // Unscoped progress is broadcast for prompts without a client; only trust it once ours runs.
        if (d.prompt_id === undefined && type === 'progress' && !this.started) return;
        this.started = true;
        arm();
        switch (type) {
          case 'progress': {
            const p = parsed.data as { value: number; max: number };
            step = p.value;
            total = p.max;
            o.onProgress(step, total);
            return;
          }
          case 'executing':
            if ((parsed.data as { node: string | null }).node === null) settle();
            return;
          case 'execution_success':
            return settle();
          case 'execution_error': {
            const x = parsed.data as { node_id?: string; node_type?: string; exception_type?: string; exception_message?: string };
            const msg = `${x.exception_type ?? 'error'}: ${(x.exception_message ?? '').split('\n')[0]}`.slice(0, 300);
            return settle(
              new BackendError(backend, 'unavailable', `execution error in node ${x.node_id ?? '?'} (${x.node_type ?? '?'}): ${msg}`),
            );
          }
          case 'execution_interrupted':
            return settle(
              new BackendError(backend, 'bad-response', 'our prompt was interrupted on the server by someone else', { retryable: true }),
            );
          default:
            return;
        }
      };

      this.listener = handle;
      this.stopFollowing = () => {
        settled = true;
        clearTimeout(timer);
      };
      for (const e of this.buffer.splice(0)) handle(e);
      if (!settled) arm();
    });
  }

  /** Closes the socket; later events are dropped. */
  close(): void {
    this.closedByUs = true;
    this.listener = undefined;
    this.stopFollowing?.();
    this.ws.terminate();
  }
}
