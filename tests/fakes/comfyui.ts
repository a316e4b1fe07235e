import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import sharp from 'sharp';
import { WebSocketServer, type WebSocket } from 'ws';

export type FakeComfyMode = 'ok' | 'hang' | 'error500' | 'die-mid-job';

export interface FakeComfyOptions {
  stepDelayMs?: number;
  checkpoints?: string[];
  mode?: FakeComfyMode;
}

type Graph = Record<string, { class_type: string; inputs: Record<string, unknown> }>;

const KNOWN = new Set([
  'CheckpointLoaderSimple', 'CLIPTextEncode', 'EmptyLatentImage', 'KSampler', 'VAEDecode', 'SaveImage', 'LoadImage', 'LoadImageMask',
  'VAEEncodeForInpaint', 'InpaintModelConditioning', 'SetLatentNoiseMask', 'VAEEncode', 'RepeatLatentBatch',
]);

function send(res: ServerResponse, status: number, body?: unknown, type = 'application/json') {
  res.writeHead(status, { 'content-type': type }).end(body === undefined ? '' : typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body));
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Pulls `image` file bytes and the name out of a multipart upload (enough for our client's FormData). */
function parseUpload(body: Buffer, contentType: string): { name: string; data: Buffer } | null {
  const boundary = /boundary=(.+)$/.exec(contentType)?.[1];
  if (!boundary) return null;
  for (const part of body.toString('latin1').split(`--${boundary}`)) {
    const m = /name="image"; filename="([^"]+)"/.exec(part);
    if (!m) continue;
    const start = part.indexOf('\r\n\r\n') + 4;
    return { name: m[1]!, data: Buffer.from(part.slice(start, part.length - 2), 'latin1') };
  }
  return null;
}

/**
 * A fake ComfyUI: /prompt validation, one prompt at a time, `/ws` status/progress/preview/executing
 * messages, /history, /view, /upload/image, /interrupt, /queue deletes and /system_stats.
 */
export async function startFakeComfyUI(opts: FakeComfyOptions = {}) {
  let mode: FakeComfyMode = opts.mode ?? 'ok';
  const checkpoints = opts.checkpoints ?? ['sd_xl_base_1.0.safetensors'];
  const stepDelayMs = opts.stepDelayMs ?? 5;
  const sockets = new Map<string, WebSocket>();
  const history = new Map<string, unknown>();
  const files = new Map<string, Buffer>();
  const uploads: { name: string; data: Buffer }[] = [];
  const prompts: Graph[] = [];
  const requests: { at: number; method: string; path: string }[] = [];
  const deleted = new Set<string>();
  const state = { interrupts: 0, interruptNow: false, running: 0, maxConcurrent: 0 };
  let chain: Promise<void> = Promise.resolve();
  const conns = new Set<Socket>();

  const emit = (clientId: string, type: string, data: unknown) => sockets.get(clientId)?.send(JSON.stringify({ type, data }));

  async function execute(id: string, graph: Graph, clientId: string) {
    if (deleted.has(id)) return;
    state.running++;
    state.maxConcurrent = Math.max(state.maxConcurrent, state.running);
    try {
      emit(clientId, 'execution_start', { prompt_id: id, timestamp: Date.now() });
      emit(clientId, 'execution_cached', { nodes: [], prompt_id: id, timestamp: Date.now() });
      if (mode === 'hang') return;
      const sampler = Object.entries(graph).find(([, n]) => n.class_type === 'KSampler')!;
      const steps = Number(sampler[1].inputs.steps);
      emit(clientId, 'executing', { node: sampler[0], display_node: sampler[0], prompt_id: id });
      const preview = await sharp({ create: { width: 32, height: 32, channels: 3, background: '#888' } }).png().toBuffer();
      for (let s = 1; s <= steps; s++) {
        await new Promise((r) => setTimeout(r, stepDelayMs));
        if (state.interruptNow) {
          state.interruptNow = false;
          emit(clientId, 'execution_interrupted', { prompt_id: id, node_id: sampler[0], node_type: 'KSampler', executed: [], timestamp: Date.now() });
          emit(clientId, 'executing', { node: null, prompt_id: id });
          history.set(id, { outputs: {}, status: { status_str: 'error', completed: false, messages: [] } });
          return;
        }
        if (mode === 'die-mid-job' && s >= 2) {
          for (const ws of sockets.values()) ws.terminate();
          for (const c of conns) c.destroy();
          return;
        }
        emit(clientId, 'progress', { value: s, max: steps, prompt_id: id, node: sampler[0] });
        if (s % 2 === 0) {
          const head = Buffer.alloc(8);
          head.writeUInt32BE(1, 0);
          head.writeUInt32BE(2, 4);
          sockets.get(clientId)?.send(Buffer.concat([head, preview]));
        }
      }
      const latent = Object.values(graph).find((n) => n.class_type === 'EmptyLatentImage');
      const loaded = Object.values(graph).find((n) => n.class_type === 'LoadImage');
      let width = Number(latent?.inputs.width ?? 64);
      let height = Number(latent?.inputs.height ?? 64);
      let count = Number(latent?.inputs.batch_size ?? 1);
      if (loaded) {
        const meta = await sharp(files.get(String(loaded.inputs.image))!).metadata();
        width = meta.width!;
        height = meta.height!;
        count = Number(Object.values(graph).find((n) => n.class_type === 'RepeatLatentBatch')?.inputs.amount ?? 1);
      }
      const images = [];
      for (let i = 0; i < count; i++) {
        const filename = `imagebot_${id.slice(0, 8)}_${i}_.png`;
        files.set(`output/${filename}`, await sharp({ create: { width, height, channels: 3, background: { r: (i * 60) % 256, g: 100, b: 150 } } }).png().toBuffer());
        images.push({ filename, subfolder: '', type: 'output' });
      }
      emit(clientId, 'executed', { node: '9', display_node: '9', output: { images }, prompt_id: id });
      history.set(id, { prompt: [0, id, graph, { client_id: clientId }, ['9']], outputs: { '9': { images } }, status: { status_str: 'success', completed: true, messages: [] } });
      emit(clientId, 'execution_success', { prompt_id: id, timestamp: Date.now() });
      emit(clientId, 'executing', { node: null, prompt_id: id });
    } finally {
      state.running--;
    }
  }

  const server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const path = url.pathname.replace(/^\/api\//, '/');
      requests.push({ at: Date.now(), method: req.method ?? 'GET', path });
      const body = await readBody(req);
      if (req.method === 'POST' && path === '/prompt') {
        if (mode === 'error500') return send(res, 500, '500 Internal Server Error', 'text/plain');
        const parsed = JSON.parse(body.toString()) as { prompt?: Graph; client_id?: string };
        const graph = parsed.prompt ?? {};
        const unknown = Object.values(graph).find((n) => !KNOWN.has(n.class_type));
        if (unknown) return send(res, 400, { error: { type: 'missing_node_type', message: `Node '${unknown.class_type}' not found`, details: '', extra_info: {} }, node_errors: {} });
        if (!Object.values(graph).some((n) => n.class_type === 'SaveImage')) {
          return send(res, 400, { error: { type: 'prompt_no_outputs', message: 'Prompt has no outputs', details: '', extra_info: {} }, node_errors: {} });
        }
        const ckpt = Object.entries(graph).find(([, n]) => n.class_type === 'CheckpointLoaderSimple');
        if (ckpt && !checkpoints.includes(String(ckpt[1].inputs.ckpt_name))) {
          return send(res, 400, {
            error: { type: 'prompt_outputs_failed_validation', message: 'Prompt outputs failed validation', details: `Value not in list: ckpt_name: '${String(ckpt[1].inputs.ckpt_name)}'`, extra_info: {} },
            node_errors: { [ckpt[0]]: { errors: [{ type: 'value_not_in_list', message: 'Value not in list' }], dependent_outputs: ['9'], class_type: 'CheckpointLoaderSimple' } },
          });
        }
        prompts.push(graph);
        const id = randomUUID();
        chain = chain.then(() => execute(id, graph, parsed.client_id ?? ''));
        return send(res, 200, { prompt_id: id, number: prompts.length, node_errors: {} });
      }
      if (req.method === 'GET' && path.startsWith('/history/')) {
        const id = path.slice('/history/'.length);
        const h = history.get(id);
        return send(res, 200, h ? { [id]: h } : {});
      }
      if (req.method === 'GET' && path === '/view') {
        const f = files.get(`${url.searchParams.get('type') ?? 'output'}/${url.searchParams.get('filename')}`) ?? files.get(String(url.searchParams.get('filename')));
        return f ? send(res, 200, f, 'image/png') : send(res, 404);
      }
      if (req.method === 'POST' && path === '/upload/image') {
        const up = parseUpload(body, String(req.headers['content-type']));
        if (!up) return send(res, 400);
        uploads.push(up);
        files.set(up.name, up.data);
        return send(res, 200, { name: up.name, subfolder: '', type: 'input' });
      }
      if (req.method === 'POST' && path === '/interrupt') {
        state.interrupts++;
        if (state.running > 0) state.interruptNow = true;
        return send(res, 200);
      }
      if (req.method === 'POST' && path === '/queue') {
        const q = JSON.parse(body.toString() || '{}') as { delete?: string[] };
        for (const id of q.delete ?? []) deleted.add(id);
        return send(res, 200);
      }
      if (req.method === 'GET' && path === '/system_stats') {
        return send(res, 200, { system: { os: 'posix', comfyui_version: '0.3.0' }, devices: [{ name: 'cuda:0 Fake RTX', type: 'cuda', index: 0, vram_total: 24 * 2 ** 30, vram_free: 20 * 2 ** 30 }] });
      }
      send(res, 404);
    })();
  });
  server.on('connection', (c: Socket) => {
    conns.add(c);
    c.on('close', () => conns.delete(c));
  });
  const wss = new WebSocketServer({ server, path: '/ws' });
  wss.on('connection', (ws, req) => {
    const clientId = new URL(req.url ?? '/', 'http://x').searchParams.get('clientId') ?? randomUUID();
    sockets.set(clientId, ws);
    ws.send(JSON.stringify({ type: 'status', data: { status: { exec_info: { queue_remaining: 0 } }, sid: clientId } }));
    ws.on('close', () => sockets.get(clientId) === ws && sockets.delete(clientId));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    prompts,
    uploads,
    requests,
    get interrupts() {
      return state.interrupts;
    },
    get maxConcurrent() {
      return state.maxConcurrent;
    },
    setMode(m: FakeComfyMode) {
      mode = m;
    },
    async close() {
      for (const ws of sockets.values()) ws.terminate();
      for (const c of conns) c.destroy();
      wss.close();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
