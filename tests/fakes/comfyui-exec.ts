/**
 * The fake ComfyUI's prompt queue and executor (one prompt at a time, like the single worker
 * thread of `main.py`): websocket messages in ComfyUI's order, previews, node cache, history.
 * @module
 */
import sharp from 'sharp';
import type { WebSocket } from 'ws';
import { executionOrder, type Graph, signatures } from './comfyui-nodes.js';

/** See `FakeComfyUIOptions.mode` in comfyui.ts. */
export type FakeComfyUIMode = 'ok' | 'hang' | 'freeze' | 'error500' | 'garbage' | 'die-mid-job' | 'wrong-size' | 'exec-error';

/** One POST /prompt the fake accepted, and what became of it. */
export interface FakeComfyUIPrompt {
  promptId: string;
  number: number;
  clientId: string | undefined;
  graph: Graph;
  outputs: string[];
  receivedAt: number;
  startedAt?: number;
  finishedAt?: number;
  outcome?: 'success' | 'interrupted' | 'error' | 'hung' | 'died' | 'deleted';
}

export interface ImageRef {
  filename: string;
  subfolder: string;
  type: string;
}

/** What the executor shares with the HTTP side. */
export interface ExecState {
  mode: () => FakeComfyUIMode;
  stepDelayMs: number;
  previewEvery: number;
  /** Files by `${type}/${subfolder}/${name}`. */
  files: Map<string, Buffer>;
  sockets: Map<string, { ws: WebSocket; previewMetadata: boolean }>;
  /** Resolves when the fake is closed (ends hung prompts). */
  closed: Promise<void>;
  isClosed: () => boolean;
  /** Crashes the process: every socket dropped. */
  die: () => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const OOM =
  'Allocation on device 0 would exceed allowed memory. (out of memory)\nCurrently allocated     : 21.31 GiB\nRequested               : 2.50 GiB';

export const fileKey = (type: string, subfolder: string, name: string) => `${type}/${subfolder}/${name}`;

function colorFor(seed: number, i: number) {
  const v = Math.imul((seed + i) >>> 0, 2654435761) >>> 0;
  return { r: v & 255, g: (v >>> 8) & 255, b: (v >>> 16) & 255 };
}

/** The fake's executor: queue, running prompt, history, cache. */
export function createExecutor(st: ExecState) {
  const pending: FakeComfyUIPrompt[] = [];
  const history = new Map<string, Record<string, unknown>>();
  let cache = new Map<string, { ui?: { images: ImageRef[] } }>();
  let running: FakeComfyUIPrompt | undefined;
  let interruptFlag = false;
  let lastNode: string | null = null;
  let counter = 0;
  let generation = 0;
  const previews = new Map<number, Promise<Buffer>>();

  function send(sid: string | undefined, type: string, data: unknown, broadcastIfNone = false): void {
    const frame = JSON.stringify({ type, data });
    if (sid === undefined) {
      if (broadcastIfNone) for (const s of st.sockets.values()) s.ws.send(frame);
      return;
    }
    st.sockets.get(sid)?.ws.send(frame);
  }

  const queueRemaining = () => pending.length + (running ? 1 : 0);
  function broadcastStatus(): void {
    for (const s of st.sockets.values())
      s.ws.send(JSON.stringify({ type: 'status', data: { status: { exec_info: { queue_remaining: queueRemaining() } } } }));
  }

  async function sendPreview(p: FakeComfyUIPrompt, node: string, step: number): Promise<void> {
    let png = previews.get(step);
    if (!png) {
      png = sharp({ create: { width: 16, height: 16, channels: 3, background: colorFor(step, 7) } })
        .png()
        .toBuffer();
      previews.set(step, png);
    }
    const img = await png;
    const sock = p.clientId === undefined ? undefined : st.sockets.get(p.clientId);
    if (!sock) return;
    if (sock.previewMetadata) {
      const meta = Buffer.from(
        JSON.stringify({
          node_id: node,
          prompt_id: p.promptId,
          display_node_id: node,
          parent_node_id: null,
          real_node_id: node,
          image_type: 'image/png',
        }),
      );
      const head = Buffer.alloc(8);
      head.writeUInt32BE(4, 0);
      head.writeUInt32BE(meta.length, 4);
      sock.ws.send(Buffer.concat([head, meta, img]));
      return;
    }
    const head = Buffer.alloc(8);
    head.writeUInt32BE(1, 0);
    head.writeUInt32BE(2, 4);
    sock.ws.send(Buffer.concat([head, img]));
  }

  /** Size and batch of what a link produces, following the graph back to its source. */
  async function dims(g: Graph, ref: unknown): Promise<{ width: number; height: number; batch: number; seed: number }> {
    const [id, slot] = ref as [string, number];
    const n = g[id]!;
    const i = n.inputs;
    const r8 = (v: number) => Math.floor(v / 8) * 8;
    switch (n.class_type) {
      case 'EmptyLatentImage':
        return { width: r8(Number(i.width)), height: r8(Number(i.height)), batch: Number(i.batch_size), seed: 0 };
      case 'LoadImage': {
        const m = await sharp(st.files.get(fileKey('input', '', String(i.image)))).metadata();
        return { width: m.width ?? 0, height: m.height ?? 0, batch: 1, seed: 0 };
      }
      case 'KSampler':
        return { ...(await dims(g, i.latent_image)), seed: Number(i.seed) };
      case 'VAEDecode':
      case 'SetLatentNoiseMask':
        return dims(g, i.samples);
      case 'RepeatLatentBatch': {
        const d = await dims(g, i.samples);
        return { ...d, batch: d.batch * Number(i.amount) };
      }
      case 'InpaintModelConditioning':
      case 'VAEEncodeForInpaint':
      case 'VAEEncode': {
        const d = await dims(g, i.pixels);
        return { ...d, width: r8(d.width), height: r8(d.height) };
      }
      default:
        throw new Error(`fake cannot size output ${slot} of ${n.class_type}`);
    }
  }

  async function saveImages(p: FakeComfyUIPrompt, id: string): Promise<{ images: ImageRef[] }> {
    const node = p.graph[id]!;
    const d = await dims(p.graph, node.inputs.images);
    const width = st.mode() === 'wrong-size' ? d.width + 64 : d.width;
    const images: ImageRef[] = [];
    for (let b = 0; b < d.batch; b++) {
      const filename = `${String(node.inputs.filename_prefix)}_${String(++counter).padStart(5, '0')}_.png`;
      const png = await sharp({ create: { width, height: d.height, channels: 3, background: colorFor(d.seed, b) } })
        .png()
        .toBuffer();
      st.files.set(fileKey('output', '', filename), png);
      images.push({ filename, subfolder: '', type: 'output' });
    }
    return { images };
  }

  function writeHistory(p: FakeComfyUIPrompt, ok: boolean, messages: Array<[string, unknown]>, outputs: Record<string, unknown>): void {
    history.set(p.promptId, {
      prompt: [p.number, p.promptId, p.graph, { client_id: p.clientId, create_time: p.receivedAt }, p.outputs],
      outputs,
      status: { status_str: ok ? 'success' : 'error', completed: ok, messages },
      meta: Object.fromEntries(
        Object.keys(outputs).map((id) => [id, { node_id: id, display_node: id, parent_node: null, real_node_id: id }]),
      ),
    });
  }

  async function execute(p: FakeComfyUIPrompt): Promise<void> {
    const gen = generation;
    const sid = p.clientId;
    const pid = p.promptId;
    const messages: Array<[string, unknown]> = [];
    const log = (type: string, data: unknown, broadcast = false) => {
      messages.push([type, data]);
      send(sid, type, data, broadcast);
    };
    running = p;
    interruptFlag = false;
    p.startedAt = Date.now();
    log('execution_start', { prompt_id: pid, timestamp: Date.now() });
    const order = executionOrder(p.graph, p.outputs);
    const sig = signatures(p.graph, order);
    // clean_unused: only nodes of the current prompt stay cached.
    const live = new Set(sig.values());
    cache = new Map([...cache].filter(([k]) => live.has(k)));
    const cachedIds = order.filter((id) => cache.has(sig.get(id)!));
    log('execution_cached', { nodes: cachedIds, prompt_id: pid, timestamp: Date.now() });
    const executed: string[] = [];
    const outputs: Record<string, { images: ImageRef[] }> = {};
    const stale = () => st.isClosed() || gen !== generation;

    const finish = (ok: boolean, failure?: { type: string; data: Record<string, unknown> }) => {
      if (failure) log(failure.type, failure.data, failure.type === 'execution_interrupted');
      else log('execution_success', { prompt_id: pid, timestamp: Date.now() });
      p.outcome = ok ? 'success' : failure?.type === 'execution_interrupted' ? 'interrupted' : 'error';
      // History is written by task_done after execute() returns; the done marker follows it.
      setImmediate(() => {
        if (stale()) return;
        writeHistory(p, ok, messages, outputs);
        p.finishedAt = Date.now();
        running = undefined;
        lastNode = null;
        broadcastStatus();
        send(sid, 'executing', { node: null, prompt_id: pid });
        pump();
      });
    };
    const fail = (id: string, type: 'execution_interrupted' | 'execution_error') => {
      const base = { prompt_id: pid, node_id: id, node_type: p.graph[id]!.class_type, executed: [...executed], timestamp: Date.now() };
      const data =
        type === 'execution_interrupted'
          ? base
          : {
              ...base,
              exception_message: OOM,
              exception_type: 'torch.OutOfMemoryError',
              traceback: ['  File "execution.py", line 496, in execute\n'],
              current_inputs: {},
              current_outputs: [],
            };
      finish(false, { type, data });
    };

    for (const id of order) {
      const node = p.graph[id]!;
      const hit = cache.get(sig.get(id)!);
      if (hit) {
        if (hit.ui) {
          outputs[id] = hit.ui;
          send(sid, 'executed', { node: id, display_node: id, output: hit.ui, prompt_id: pid });
        }
        continue;
      }
      // before_node_execution raises when the interrupt flag is set.
      if (interruptFlag) return fail(id, 'execution_interrupted');
      lastNode = id;
      send(sid, 'executing', { node: id, display_node: id, prompt_id: pid });
      let ui: { images: ImageRef[] } | undefined;
      if (node.class_type === 'KSampler') {
        if (st.mode() === 'hang') {
          p.outcome = 'hung';
          await st.closed;
          return;
        }
        const steps = Number(node.inputs.steps);
        for (let s = 1; s <= steps; s++) {
          await sleep(st.stepDelayMs);
          if (stale()) return;
          // The process stopped: nothing more is sent, nothing is answered.
          if (st.mode() === 'freeze') {
            p.outcome = 'hung';
            await st.closed;
            return;
          }
          if (interruptFlag) return fail(id, 'execution_interrupted');
          if (st.mode() === 'die-mid-job' && s >= 2) {
            p.outcome = 'died';
            st.die();
            return;
          }
          if (st.mode() === 'exec-error' && s >= 2) return fail(id, 'execution_error');
          send(sid, 'progress', { value: s, max: steps, prompt_id: pid, node: id }, true);
          const state = {
            value: s,
            max: steps,
            state: 'running',
            node_id: id,
            prompt_id: pid,
            display_node_id: id,
            parent_node_id: null,
            real_node_id: id,
          };
          send(sid, 'progress_state', { prompt_id: pid, nodes: { [id]: state } }, true);
          if (s % st.previewEvery === 0) await sendPreview(p, id, s);
        }
      } else if (node.class_type === 'SaveImage') {
        try {
          ui = await saveImages(p, id);
        } catch {
          return fail(id, 'execution_error');
        }
      } else {
        await new Promise((r) => setImmediate(r));
      }
      if (stale()) return;
      executed.push(id);
      cache.set(sig.get(id)!, ui ? { ui } : {});
      if (ui) {
        outputs[id] = ui;
        send(sid, 'executed', { node: id, display_node: id, output: ui, prompt_id: pid });
      }
    }
    finish(true);
  }

  function pump(): void {
    if (running || st.isClosed()) return;
    const next = pending.shift();
    if (!next) return;
    void execute(next);
  }

  const tuple = (p: FakeComfyUIPrompt) => [p.number, p.promptId, p.graph, { client_id: p.clientId, create_time: p.receivedAt }, p.outputs];

  return {
    history,
    get running() {
      return running;
    },
    /** Node the running prompt is on (sent to a client that reconnects). */
    get lastNode() {
      return lastNode;
    },
    queueRemaining,
    enqueue(p: FakeComfyUIPrompt): void {
      pending.push(p);
      pending.sort((a, b) => a.number - b.number);
      broadcastStatus();
      // The worker thread picks it up on its next loop, not synchronously.
      setImmediate(pump);
    },
    /** POST /interrupt: only the running prompt, and only if `promptId` (when given) names it. */
    interrupt(promptId?: string): void {
      if (running && (promptId === undefined || promptId === running.promptId)) interruptFlag = true;
    },
    deletePending(ids: string[] | 'all'): void {
      for (let i = pending.length - 1; i >= 0; i--) {
        if (ids === 'all' || ids.includes(pending[i]!.promptId)) pending.splice(i, 1)[0]!.outcome = 'deleted';
      }
      broadcastStatus();
    },
    queue() {
      return { queue_running: running ? [tuple(running)] : [], queue_pending: pending.map(tuple) };
    },
    /** Forgets the queue and the running prompt (the process restarted). */
    reset(): void {
      generation++;
      pending.length = 0;
      running = undefined;
      lastNode = null;
      cache = new Map();
    },
  };
}
