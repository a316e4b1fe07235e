import { randomUUID } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import sharp from 'sharp';
import { type WebSocket, WebSocketServer } from 'ws';
import { createExecutor, type FakeComfyUIMode, type FakeComfyUIPrompt, fileKey } from './comfyui-exec.js';
import { type Graph, nodeCatalog, objectInfo, validatePrompt } from './comfyui-nodes.js';
import { multipartBoundary, parseMultipart } from './discord/multipart.js';

export type { FakeComfyUIMode } from './comfyui-exec.js';

export interface FakeComfyUIOptions {
  /** Delay per KSampler step (default 5 ms). */
  stepDelayMs?: number;
  /** Files in models/checkpoints (default `sd_xl_base_1.0.safetensors`). */
  checkpoints?: string[];
  /** A binary preview every this many steps (default 2). */
  previewEvery?: number;
  /**
   * - `hang`: prompts are accepted and start, then the sampler never moves; interrupts do nothing.
   * - `freeze`: the process stops: nothing is answered any more (HTTP, websocket upgrades), a running
   *   prompt sends no further message.
   * - `error500` / `garbage`: POST /prompt and uploads answer 500 (aiohttp's text) / 200 with HTML;
   *   `garbage` also affects the other JSON routes.
   * - `die-mid-job`: at step 2 the process crashes: every socket is destroyed, the queue is lost and
   *   every later connection is dropped until setMode().
   * - `wrong-size`: saved images are 64 px wider than the latent.
   * - `exec-error`: the sampler fails at step 2 with CUDA out of memory (`execution_error`).
   */
  mode?: FakeComfyUIMode;
}

export interface FakeComfyUIRequest {
  at: number;
  method: string;
  /** Path without the `/api` prefix. */
  path: string;
  query: string;
  json?: unknown;
  headers: IncomingHttpHeaders;
}

export interface FakeComfyUIUpload {
  at: number;
  route: '/upload/image' | '/upload/mask';
  /** Name it was stored under (what the response said). */
  name: string;
  /** Filename of the multipart part. */
  filename: string;
  subfolder: string;
  type: string;
  overwrite: boolean;
  /** The bytes as uploaded. */
  data: Buffer;
}

export interface FakeComfyUIWs {
  clientId: string;
  openedAt: number;
  closedAt?: number;
  previewMetadata: boolean;
}

const HTML =
  '<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const SYSTEM = {
  os: 'posix',
  ram_total: 67_108_864_000,
  ram_free: 51_200_000_000,
  comfyui_version: '0.3.43',
  python_version: '3.12.3 (main)',
  pytorch_version: '2.7.1+cu128',
  embedded_python: false,
  argv: ['main.py', '--listen'],
};
const DEVICE = {
  name: 'cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync',
  type: 'cuda',
  index: 0,
  vram_total: 25_393_692_672,
  vram_free: 23_622_320_128,
  torch_vram_total: 0,
  torch_vram_free: 0,
};

/**
 * A fake ComfyUI on 127.0.0.1 speaking the real HTTP + websocket protocol (see
 * /work/shared/reference/comfyui-api.md): validated prompts, one execution at a time, progress and
 * binary previews on `/ws`, history, /view, uploads, /interrupt, /queue, and failure modes.
 */
export async function startFakeComfyUI(opts: FakeComfyUIOptions = {}) {
  let mode: FakeComfyUIMode = opts.mode ?? 'ok';
  const checkpoints = opts.checkpoints ?? ['sd_xl_base_1.0.safetensors'];
  const requests: FakeComfyUIRequest[] = [];
  const unhandled: FakeComfyUIRequest[] = [];
  const prompts: FakeComfyUIPrompt[] = [];
  /** Every POST /prompt body, accepted or not. */
  const received: Array<{ at: number; body: unknown; status: number }> = [];
  const uploads: FakeComfyUIUpload[] = [];
  const interrupts: Array<{ at: number; promptId?: string; running?: string }> = [];
  const queueDeletes: Array<{ at: number; ids: string[] | 'all' }> = [];
  const wsLog: FakeComfyUIWs[] = [];
  const files = new Map<string, Buffer>();
  /** Hostile output: what /view answers for every output file instead of the saved image. */
  let viewOverride: Buffer | undefined;
  const sockets = new Set<Socket>();
  const clients = new Map<string, { ws: WebSocket; previewMetadata: boolean }>();
  let dead = false;
  let closed = false;
  let number = 0;
  let onClosed!: () => void;
  const closedP = new Promise<void>((r) => (onClosed = r));
  const catalog = nodeCatalog({
    checkpoints: () => checkpoints,
    inputFiles: () => [...files.keys()].filter((k) => k.startsWith('input//')).map((k) => k.slice(7)),
  });
  const wss = new WebSocketServer({ noServer: true });

  function die(): void {
    dead = true;
    exec.reset();
    for (const c of wss.clients) c.terminate();
    for (const s of sockets) s.destroy();
  }
  const exec = createExecutor({
    mode: () => mode,
    stepDelayMs: opts.stepDelayMs ?? 5,
    previewEvery: opts.previewEvery ?? 2,
    files,
    sockets: clients,
    closed: closedP,
    isClosed: () => closed,
    die,
  });

  const json = (res: ServerResponse, status: number, body: unknown): void =>
    void res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(body));
  const text = (res: ServerResponse, status: number, body = '', type = 'text/plain; charset=utf-8'): void =>
    void res.writeHead(status, { 'content-type': type }).end(body);
  const aiohttp500 = (res: ServerResponse) => text(res, 500, '500 Internal Server Error\n\nServer got itself in trouble');
  const garbage = (res: ServerResponse) => text(res, 200, HTML, 'text/html');

  function postPrompt(res: ServerResponse, body: unknown): void {
    const b = (body ?? {}) as { prompt?: unknown; client_id?: unknown; number?: unknown; front?: unknown; prompt_id?: unknown };
    const answer = (status: number, payload: unknown) => {
      received.push({ at: Date.now(), body, status });
      json(res, status, payload);
    };
    if (typeof b.prompt !== 'object' || b.prompt === null) {
      return answer(400, {
        error: { type: 'no_prompt', message: 'No prompt provided', details: 'No prompt provided', extra_info: {} },
        node_errors: {},
      });
    }
    let promptId: string = randomUUID();
    if (b.prompt_id !== undefined) {
      if (typeof b.prompt_id !== 'string' || !UUID.test(b.prompt_id)) {
        return answer(400, {
          error: { type: 'invalid_prompt_id', message: 'Invalid prompt_id', details: String(b.prompt_id), extra_info: {} },
          node_errors: {},
        });
      }
      if (prompts.some((p) => p.promptId === b.prompt_id)) return answer(409, { error: 'prompt_id already exists' });
      promptId = b.prompt_id;
    }
    const graph = b.prompt as Graph;
    const v = validatePrompt(graph, catalog);
    if (!v.ok) return answer(v.status, v.body);
    const n = typeof b.number === 'number' ? b.number : b.front === true ? -++number : ++number;
    const clientId = typeof b.client_id === 'string' ? b.client_id : undefined;
    const p: FakeComfyUIPrompt = {
      promptId,
      number: n,
      clientId,
      graph: structuredClone(graph),
      outputs: v.outputs,
      receivedAt: Date.now(),
    };
    prompts.push(p);
    answer(200, { prompt_id: promptId, number: n, node_errors: {} });
    exec.enqueue(p);
  }

  async function upload(res: ServerResponse, route: '/upload/image' | '/upload/mask', req: IncomingMessage, raw: Buffer): Promise<void> {
    const boundary = multipartBoundary(req.headers['content-type']);
    if (!boundary) return text(res, 400);
    const parts = parseMultipart(raw, boundary);
    const field = (n: string) => parts.find((p) => p.name === n && p.filename === undefined)?.data.toString('utf8');
    const image = parts.find((p) => p.name === 'image');
    if (!image?.filename) return text(res, 400);
    const type = field('type') || 'input';
    const subfolder = field('subfolder') ?? '';
    const overwrite = field('overwrite') === 'true' || field('overwrite') === '1';
    if (subfolder.split('/').includes('..') || image.filename.includes('/') || image.filename.includes('..')) return text(res, 400);
    let stored = image.data;
    if (route === '/upload/mask') {
      // The mask's alpha is copied into the original, saved under the uploaded name.
      const ref = JSON.parse(field('original_ref') ?? '{}') as { filename?: string; subfolder?: string; type?: string };
      const original = files.get(fileKey(ref.type || 'output', ref.subfolder ?? '', ref.filename ?? ''));
      if (!original) return text(res, 404);
      const alpha = await sharp(image.data).ensureAlpha().extractChannel(3).toBuffer();
      stored = await sharp(original).removeAlpha().joinChannel(alpha).png().toBuffer();
    }
    let name = image.filename;
    if (!overwrite) {
      const dot = name.lastIndexOf('.');
      const [stem, ext] = dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ''];
      for (let i = 1; files.has(fileKey(type, subfolder, name)) && !files.get(fileKey(type, subfolder, name))!.equals(stored); i++)
        name = `${stem} (${i})${ext}`;
    }
    files.set(fileKey(type, subfolder, name), stored);
    uploads.push({ at: Date.now(), route, name, filename: image.filename, subfolder, type, overwrite, data: image.data });
    json(res, 200, { name, subfolder, type });
  }

  function view(res: ServerResponse, q: URLSearchParams): void {
    const filename = q.get('filename');
    if (filename === null) return text(res, 404);
    if (filename.startsWith('/') || filename.includes('..')) return text(res, 400);
    const subfolder = q.get('subfolder') ?? '';
    if (subfolder.startsWith('/') || subfolder.split('/').includes('..')) return text(res, 403);
    const type = q.get('type') || 'output';
    const data =
      type === 'output' && files.has(fileKey(type, subfolder, filename)) && viewOverride
        ? viewOverride
        : files.get(fileKey(type, subfolder, filename));
    if (!data) return text(res, 404);
    res
      .writeHead(200, { 'content-type': 'image/png', 'content-disposition': `filename="${filename}"`, 'content-length': data.length })
      .end(data);
    return;
  }

  const ROUTES: Record<string, string[]> = {
    '/prompt': ['GET', 'POST'],
    '/history': ['GET', 'POST'],
    '/view': ['GET'],
    '/upload/image': ['POST'],
    '/upload/mask': ['POST'],
    '/interrupt': ['POST'],
    '/queue': ['GET', 'POST'],
    '/free': ['POST'],
    '/system_stats': ['GET'],
    '/object_info': ['GET'],
  };

  async function handle(req: IncomingMessage, res: ServerResponse, raw: Buffer): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const path = url.pathname.replace(/^\/api(?=\/)/, '');
    const method = req.method ?? 'GET';
    let body: unknown;
    const isJson = raw.length > 0 && !multipartBoundary(req.headers['content-type']);
    if (isJson) {
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        body = undefined;
      }
    }
    const rec: FakeComfyUIRequest = {
      at: Date.now(),
      method,
      path,
      query: url.search,
      ...(body === undefined ? {} : { json: body }),
      headers: req.headers,
    };
    requests.push(rec);
    if (dead) return void req.socket.destroy();
    if (mode === 'freeze') return;
    const origin = req.headers.origin;
    if (origin && req.headers.host && new URL(`http://${req.headers.host}`).hostname !== new URL(origin).hostname) return text(res, 403);
    const base = path.startsWith('/history/') ? '/history' : path.startsWith('/object_info/') ? '/object_info' : path;
    const allowed = ROUTES[base];
    if (!allowed?.includes(method)) {
      unhandled.push(rec);
      return text(res, allowed ? 405 : 404, allowed ? '405: Method Not Allowed' : '404: Not Found');
    }
    if (isJson && body === undefined && method === 'POST' && base !== '/interrupt') return aiohttp500(res);
    const generating = (path === '/prompt' && method === 'POST') || path.startsWith('/upload/');
    if (mode === 'error500' && generating) return aiohttp500(res);
    if (mode === 'garbage' && (generating || ['/history', '/system_stats', '/object_info'].includes(base))) return garbage(res);

    switch (base) {
      case '/prompt':
        return method === 'POST' ? postPrompt(res, body) : json(res, 200, { exec_info: { queue_remaining: exec.queueRemaining() } });
      case '/history': {
        if (method === 'POST') {
          const b = (body ?? {}) as { clear?: boolean; delete?: string[] };
          if (b.clear) exec.history.clear();
          for (const id of b.delete ?? []) exec.history.delete(id);
          return text(res, 200);
        }
        const id = path.slice('/history/'.length);
        if (path !== '/history') return json(res, 200, exec.history.has(id) ? { [id]: exec.history.get(id) } : {});
        const max = Number(url.searchParams.get('max_items') ?? Infinity);
        return json(res, 200, Object.fromEntries([...exec.history].slice(-max)));
      }
      case '/view':
        return view(res, url.searchParams);
      case '/upload/image':
      case '/upload/mask':
        return upload(res, base, req, raw);
      case '/interrupt': {
        const promptId = (body as { prompt_id?: unknown } | undefined)?.prompt_id;
        interrupts.push({
          at: Date.now(),
          ...(typeof promptId === 'string' ? { promptId } : {}),
          ...(exec.running ? { running: exec.running.promptId } : {}),
        });
        if (mode !== 'hang') exec.interrupt(typeof promptId === 'string' ? promptId : undefined);
        return text(res, 200);
      }
      case '/queue': {
        if (method === 'GET') return json(res, 200, exec.queue());
        const b = (body ?? {}) as { clear?: boolean; delete?: string[] };
        const ids = b.clear ? 'all' : Array.isArray(b.delete) ? b.delete.map(String) : [];
        queueDeletes.push({ at: Date.now(), ids });
        exec.deletePending(ids);
        return text(res, 200);
      }
      case '/free':
        return text(res, 200);
      case '/system_stats':
        return json(res, 200, { system: SYSTEM, devices: [DEVICE] });
      case '/object_info': {
        const cls = decodeURIComponent(path.slice('/object_info/'.length));
        if (path === '/object_info')
          return json(res, 200, Object.fromEntries(Object.entries(catalog).map(([k, d]) => [k, objectInfo(k, d)])));
        const def = catalog[cls];
        return json(res, 200, def ? { [cls]: objectInfo(cls, def) } : {});
      }
    }
  }

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      handle(req, res, Buffer.concat(chunks)).catch(() => {
        if (!res.headersSent) aiohttp500(res);
      });
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const url = new URL(req.url ?? '/', 'http://fake');
    const path = url.pathname.replace(/^\/api(?=\/)/, '');
    requests.push({ at: Date.now(), method: 'GET', path, query: url.search, headers: req.headers });
    if (dead || closed) return void socket.destroy();
    if (mode === 'freeze') return;
    if (path !== '/ws') {
      unhandled.push({ at: Date.now(), method: 'GET', path, query: url.search, headers: req.headers });
      return void socket.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n');
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      // A given clientId becomes the sid, replacing an earlier socket with that id.
      const sid = url.searchParams.get('clientId') || randomUUID().replace(/-/g, '');
      const entry = { ws, previewMetadata: false };
      const rec: FakeComfyUIWs = { clientId: sid, openedAt: Date.now(), previewMetadata: false };
      wsLog.push(rec);
      clients.set(sid, entry);
      ws.on('close', () => {
        rec.closedAt = Date.now();
        if (clients.get(sid) === entry) clients.delete(sid);
      });
      ws.on('message', (data, isBinary) => {
        if (isBinary) return;
        try {
          const m = JSON.parse(String(data)) as { type?: string; data?: { supports_preview_metadata?: boolean } };
          if (m.type === 'feature_flags') {
            entry.previewMetadata = rec.previewMetadata = m.data?.supports_preview_metadata === true;
            ws.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true, max_upload_size: 104_857_600 } }));
          }
        } catch {
          // Anything else from the client is ignored, as ComfyUI does.
        }
      });
      ws.send(JSON.stringify({ type: 'status', data: { status: { exec_info: { queue_remaining: exec.queueRemaining() } }, sid } }));
      const running = exec.running;
      if (running?.clientId === sid && exec.lastNode)
        ws.send(
          JSON.stringify({ type: 'executing', data: { node: exec.lastNode, display_node: exec.lastNode, prompt_id: running.promptId } }),
        );
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };

  return {
    url: `http://127.0.0.1:${port}`,
    /** Every HTTP request and websocket upgrade, in arrival order. */
    requests,
    /** Requests to routes the fake does not serve (answered 404/405); a test expects none. */
    unhandled,
    /** Accepted prompts (graph, client, timings, outcome), in arrival order. */
    prompts,
    /** Every POST /prompt body with the status it got. */
    received,
    uploads,
    interrupts,
    /** POST /queue deletions (`all` for clear). */
    queueDeletes,
    /** Every websocket connection, open or closed. */
    wsConnections: (): readonly FakeComfyUIWs[] => wsLog,
    /** The stored bytes of a file, e.g. `file('input', '', 'x.png')`. */
    file: (type: string, subfolder: string, name: string) => files.get(fileKey(type, subfolder, name)),
    history: (id: string) => exec.history.get(id),
    get mode() {
      return mode;
    },
    /** From now on /view answers `body` for every output image (a bomb, a GIF), as a hostile box would. */
    serveOutputs(body: Buffer | undefined) {
      viewOverride = body;
    },
    /** Changes behaviour from now on; also revives a fake that died. */
    setMode(m: FakeComfyUIMode) {
      mode = m;
      dead = false;
    },
    /** Closes at once: hung prompts end, sockets are destroyed. */
    async close() {
      closed = true;
      onClosed();
      for (const c of wss.clients) c.terminate();
      wss.close();
      for (const s of sockets) s.destroy();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A running fake ComfyUI server. */
export type FakeComfyUI = Awaited<ReturnType<typeof startFakeComfyUI>>;
