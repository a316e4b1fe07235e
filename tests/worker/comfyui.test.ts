import { createServer } from 'node:net';
import sharp from 'sharp';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { BackendError } from '../../core/errors.js';
import type { GenerationRequest } from '../../core/generation.js';
import { createLogger } from '../../core/io/logger.js';
import { buildCatalog } from '../../core/presets.js';
import type { BackendJob, BackendProgress, RunContext } from '../../worker/backends/backend.js';
import { type ComfyUIOptions, createComfyUIBackend } from '../../worker/backends/comfyui.js';
import { buildGraph } from '../../worker/backends/comfyui-graph.js';
import { parsePreviewFrame } from '../../worker/backends/comfyui-schemas.js';
import { type FakeComfyUI, type FakeComfyUIOptions, startFakeComfyUI } from '../fakes/comfyui.js';
import { bombPng } from '../fixtures/png.js';

const log = createLogger({ level: 'silent' });
let fake: FakeComfyUI;

beforeEach(async () => {
  fake = await startFakeComfyUI({ stepDelayMs: 5 });
});
afterEach(async () => {
  expect(fake.unhandled).toEqual([]);
  await fake.close();
});

async function restart(o: FakeComfyUIOptions): Promise<void> {
  await fake.close();
  fake = await startFakeComfyUI(o);
}

function request(over: Partial<GenerationRequest> = {}): GenerationRequest {
  return {
    kind: 'txt2img',
    prompt: 'a lighthouse at dusk',
    negative: 'blurry, lowres',
    width: 64,
    height: 48,
    count: 2,
    seed: 1234,
    steps: 6,
    guidance: 6.5,
    preset: 'default',
    replicateModel: 'sdxl',
    ...over,
  };
}

const job = (over: Partial<GenerationRequest> = {}, extra: Partial<BackendJob> = {}): BackendJob => ({
  jobId: 'job-1',
  request: request(over),
  ...extra,
});

function backend(over: Partial<ComfyUIOptions> = {}) {
  return createComfyUIBackend({
    id: 'comfyui',
    url: fake.url,
    checkpoint: 'sd_xl_base_1.0.safetensors',
    progressTimeoutMs: 500,
    log,
    ...over,
  });
}

function ctx(
  signal = new AbortController().signal,
  onProgress?: (p: BackendProgress) => void,
): RunContext & { progress: BackendProgress[] } {
  const progress: BackendProgress[] = [];
  return {
    signal,
    progress,
    onProgress: (p) => {
      progress.push(p);
      onProgress?.(p);
    },
  };
}

async function failure(p: Promise<unknown>): Promise<BackendError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BackendError);
  return err as BackendError;
}

async function closedPortUrl(): Promise<string> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as { port: number };
  await new Promise<void>((r) => s.close(() => r()));
  return `http://127.0.0.1:${port}`;
}

const png = (width: number, height: number, value: number) =>
  sharp({ create: { width, height, channels: 3, background: { r: value, g: value, b: value } } })
    .png()
    .toBuffer();

/** Queues a prompt the way the ComfyUI web page would (another client sharing the server). */
async function foreignPrompt(steps: number): Promise<string> {
  const graph = buildGraph(request({ steps, count: 1, seed: 99 }), 'sd_xl_base_1.0.safetensors');
  const res = await fetch(`${fake.url}/api/prompt`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: graph, client_id: 'web-ui' }),
  });
  return ((await res.json()) as { prompt_id: string }).prompt_id;
}

test('txt2img returns `count` PNGs of exactly width×height, the seed, and closes its socket', async () => {
  const b = backend();
  const out = await b.generate(job(), ctx());
  expect(out.images).toHaveLength(2);
  for (const img of out.images) {
    const meta = await sharp(img).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 64, 48]);
  }
  // The fake colours image i by seed + i: two distinct images came back.
  expect(out.images[0]!.equals(out.images[1]!)).toBe(false);
  expect([out.seed, out.billedImages]).toEqual([1234, 2]);
  expect(out.billedSeconds).toBeGreaterThan(0);
  expect(b.inFlight).toBe(0);
  const [ws] = fake.wsConnections();
  const [prompt] = fake.prompts;
  // The socket was open, with the prompt's client_id, before the prompt was posted.
  expect(ws!.clientId).toBe(prompt!.clientId);
  const order = fake.requests.map((r) => `${r.method} ${r.path}`);
  expect(order.indexOf('GET /ws')).toBeGreaterThanOrEqual(0);
  expect(order.indexOf('GET /ws')).toBeLessThan(order.indexOf('POST /prompt'));
  await expect.poll(() => fake.wsConnections()[0]!.closedAt).toBeDefined();
  expect(prompt!.outcome).toBe('success');
});

test('the posted graph is the SDXL API graph carrying every request field', async () => {
  await backend().generate(job({ count: 3, seed: 77, steps: 4, guidance: 5 }), ctx());
  expect(fake.prompts[0]!.graph).toEqual({
    '4': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'sd_xl_base_1.0.safetensors' } },
    '6': { class_type: 'CLIPTextEncode', inputs: { text: 'a lighthouse at dusk', clip: ['4', 1] } },
    '7': { class_type: 'CLIPTextEncode', inputs: { text: 'blurry, lowres', clip: ['4', 1] } },
    '5': { class_type: 'EmptyLatentImage', inputs: { width: 64, height: 48, batch_size: 3 } },
    '3': {
      class_type: 'KSampler',
      inputs: {
        model: ['4', 0],
        positive: ['6', 0],
        negative: ['7', 0],
        latent_image: ['5', 0],
        seed: 77,
        steps: 4,
        cfg: 5,
        sampler_name: 'dpmpp_2m',
        scheduler: 'karras',
        denoise: 1,
      },
    },
    '8': { class_type: 'VAEDecode', inputs: { samples: ['3', 0], vae: ['4', 2] } },
    '9': { class_type: 'SaveImage', inputs: { images: ['8', 0], filename_prefix: 'imagebot' } },
  });
  expect(fake.received[0]!.body).toMatchObject({ client_id: fake.wsConnections()[0]!.clientId });
});

test('progress arrives step by step and previews decode', async () => {
  await restart({ stepDelayMs: 10 });
  const c = ctx();
  await backend().generate(job({ steps: 8, count: 1 }), c);
  const plain = c.progress.filter((p) => !p.preview);
  expect(plain.map((p) => p.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  expect(plain.every((p) => p.total === 8 && p.fraction === p.step / 8)).toBe(true);
  const previews = c.progress.filter((p) => p.preview);
  // One every 2 steps, each tagged with the step it follows.
  expect(previews.map((p) => p.step)).toEqual([2, 4, 6, 8]);
  const meta = await sharp(previews[0]!.preview!).metadata();
  expect([meta.format, meta.width]).toEqual(['png', 16]);
});

test('a repeated identical job is served from ComfyUI cache and still returns its images', async () => {
  const b = backend();
  const first = await b.generate(job({ count: 1 }), ctx());
  const c = ctx();
  const second = await b.generate(job({ count: 1 }), c);
  expect(second.images[0]!.equals(first.images[0]!)).toBe(true);
  expect(c.progress).toEqual([]);
  expect(fake.history(fake.prompts[1]!.promptId)).toMatchObject({
    status: {
      messages: expect.arrayContaining([['execution_cached', expect.objectContaining({ nodes: ['4', '6', '7', '5', '3', '8', '9'] })]]),
    },
  });
});

test('inpaint uploads image and mask; the graph loads them and uses denoise = strength', async () => {
  const image = await png(64, 48, 200);
  const mask = await png(64, 48, 255);
  const b = backend();
  const out = await b.generate(job({ kind: 'inpaint', strength: 0.6, count: 2 }, { image, mask }), ctx());
  expect(out.images).toHaveLength(2);
  for (const img of out.images) expect(await sharp(img).metadata()).toMatchObject({ format: 'png', width: 64, height: 48 });

  expect(fake.uploads.map((u) => [u.route, u.type, u.overwrite])).toEqual([
    ['/upload/image', 'input', true],
    ['/upload/image', 'input', true],
  ]);
  const [imgUp, maskUp] = fake.uploads;
  expect(imgUp!.data.equals(image)).toBe(true);
  expect(maskUp!.data.equals(mask)).toBe(true);
  expect(imgUp!.name).toMatch(/^imagebot-job-1-[0-9a-f]{8}-image\.png$/);
  const g = fake.prompts[0]!.graph;
  expect(g['10']).toEqual({ class_type: 'LoadImage', inputs: { image: imgUp!.name } });
  expect(g['11']).toEqual({ class_type: 'LoadImageMask', inputs: { image: maskUp!.name, channel: 'red' } });
  expect(g['12']!.inputs).toMatchObject({ pixels: ['10', 0], mask: ['11', 0], noise_mask: true });
  expect(g['13']!.inputs).toEqual({ samples: ['12', 2], amount: 2 });
  expect(g['3']!.inputs).toMatchObject({ denoise: 0.6, latent_image: ['13', 0], positive: ['12', 0], negative: ['12', 1] });

  // Default strength, single image (no batch node); fresh upload names every time.
  await b.generate(job({ kind: 'inpaint', count: 1 }, { image, mask }), ctx());
  const g2 = fake.prompts[1]!.graph;
  expect(g2['3']!.inputs).toMatchObject({ denoise: 0.75, latent_image: ['12', 2] });
  expect(g2['13']).toBeUndefined();
  expect(new Set(fake.uploads.map((u) => u.name)).size).toBe(4);

  const err = await failure(b.generate(job({ kind: 'inpaint' }, { image }), ctx()));
  expect([err.kind, err.retryable]).toEqual(['rejected', false]);
  expect(fake.prompts).toHaveLength(2);
});

test('img2img uploads only the image; the graph encodes it and samples with denoise = strength, no mask', async () => {
  const image = await png(64, 48, 200);
  const b = backend();
  const out = await b.generate(job({ kind: 'img2img', strength: 0.6, count: 2 }, { image }), ctx());
  expect(out.images).toHaveLength(2);
  for (const img of out.images) expect(await sharp(img).metadata()).toMatchObject({ format: 'png', width: 64, height: 48 });

  expect(fake.uploads.map((u) => [u.route, u.type, u.data.equals(image)])).toEqual([['/upload/image', 'input', true]]);
  const g = fake.prompts[0]!.graph;
  expect(g['10']).toEqual({ class_type: 'LoadImage', inputs: { image: fake.uploads[0]!.name } });
  expect(g['12']).toEqual({ class_type: 'VAEEncode', inputs: { pixels: ['10', 0], vae: ['4', 2] } });
  expect(g['13']).toEqual({ class_type: 'RepeatLatentBatch', inputs: { samples: ['12', 0], amount: 2 } });
  expect(g['3']!.inputs).toMatchObject({ denoise: 0.6, latent_image: ['13', 0], positive: ['6', 0], negative: ['7', 0], seed: 1234 });
  expect(g['5']).toBeUndefined();
  const classes = Object.values(g).map((n) => n.class_type);
  expect(classes).not.toContain('LoadImageMask');
  expect(classes).not.toContain('InpaintModelConditioning');

  const err = await failure(b.generate(job({ kind: 'img2img' }), ctx()));
  expect([err.kind, err.retryable]).toEqual(['rejected', false]);
  expect(fake.prompts).toHaveLength(1);
});

test('upscale is an img2img pass at the target size: the uploaded image is the resized one, not the source', async () => {
  const source = await png(64, 48, 90);
  const image = await png(128, 96, 90);
  const out = await backend().generate(
    job({ kind: 'upscale', width: 128, height: 96, count: 1, strength: 0.3 }, { image, source: { image: source, width: 64, height: 48 } }),
    ctx(),
  );
  expect(out.images).toHaveLength(1);
  expect(await sharp(out.images[0]!).metadata()).toMatchObject({ format: 'png', width: 128, height: 96 });
  expect(fake.uploads).toHaveLength(1);
  expect(fake.uploads[0]!.data.equals(image)).toBe(true);
  const g = fake.prompts[0]!.graph;
  expect(g['3']!.inputs).toMatchObject({ denoise: 0.3, latent_image: ['12', 0] });
  expect(g['13']).toBeUndefined();
});

test('a checkpoint the server lacks is a non-retryable rejection naming it', async () => {
  const err = await failure(backend({ checkpoint: 'dreamshaper_xl.safetensors' }).generate(job(), ctx()));
  expect([err.kind, err.retryable, err.status]).toEqual(['rejected', false, 400]);
  expect(err.message).toContain('prompt_outputs_failed_validation');
  expect(err.message).toContain("node 4 (CheckpointLoaderSimple): value_not_in_list: ckpt_name: 'dreamshaper_xl.safetensors' not in");
  expect(fake.prompts).toHaveLength(0);
  expect(fake.received.map((r) => r.status)).toEqual([400]);
});

test('a refused connection is unavailable and retryable, at once', async () => {
  const t0 = Date.now();
  const err = await failure(backend({ url: await closedPortUrl() }).generate(job(), ctx()));
  expect(Date.now() - t0).toBeLessThan(1000);
  expect([err.kind, err.retryable]).toEqual(['unavailable', true]);
  expect(err.message).toContain('ECONNREFUSED');
});

test('a server that starts the prompt and goes silent times out within progressTimeoutMs and is interrupted', async () => {
  fake.setMode('hang');
  const t0 = Date.now();
  const err = await failure(backend({ progressTimeoutMs: 500 }).generate(job(), ctx()));
  const elapsed = Date.now() - t0;
  expect(elapsed).toBeGreaterThanOrEqual(450);
  expect(elapsed).toBeLessThan(1500);
  expect([err.kind, err.retryable]).toEqual(['timeout', true]);
  await expect.poll(() => fake.interrupts.map((i) => i.promptId)).toEqual([fake.prompts[0]!.promptId]);
});

test('requestTimeoutMs caps a job whose server keeps reporting progress', async () => {
  await restart({ stepDelayMs: 20 });
  const t0 = Date.now();
  const err = await failure(backend({ requestTimeoutMs: 300, progressTimeoutMs: 5000 }).generate(job({ steps: 100 }), ctx()));
  expect(Date.now() - t0).toBeLessThan(1000);
  expect([err.kind, err.retryable]).toEqual(['timeout', true]);
  expect(err.message).toContain('no result after 300 ms');
  await expect.poll(() => fake.prompts[0]!.outcome).toBe('interrupted');
});

test('a server that dies mid-job is a retryable failure within a couple of seconds', async () => {
  await restart({ stepDelayMs: 20, mode: 'die-mid-job' });
  const b = backend({ progressTimeoutMs: 1000 });
  const t0 = Date.now();
  const err = await failure(b.generate(job({ steps: 30 }), ctx()));
  expect(Date.now() - t0).toBeLessThan(2000);
  expect([err.kind, err.retryable]).toEqual(['unavailable', true]);
  expect(fake.prompts[0]!.outcome).toBe('died');
  expect((await b.health()).ok).toBe(false);
});

test.each([
  ['error500', 'unavailable', 500, /HTTP 500/],
  ['garbage', 'bad-response', 200, /not JSON/],
  ['wrong-size', 'bad-response', undefined, /returned 128×48, asked for 64×48/],
  ['exec-error', 'unavailable', undefined, /execution error in node 3 \(KSampler\): torch\.OutOfMemoryError/],
] as const)('mode %s → %s, retryable', async (mode, kind, status, message) => {
  fake.setMode(mode);
  const err = await failure(backend().generate(job(), ctx()));
  expect([err.kind, err.retryable, err.status]).toEqual([kind, true, status]);
  expect(err.message).toMatch(message);
  // Failures the server reported itself leave nothing to interrupt.
  expect(fake.interrupts).toEqual([]);
});

test.each([
  ['a decompression bomb (a tiny PNG declaring 20000×20000)', bombPng(), /declares 20000×20000, over the 16 MP cap/],
  ['a GIF', Buffer.from('R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7', 'base64'), /not a PNG, JPEG or WebP/],
  ['not an image at all', Buffer.from('<html>hello</html>'), /GET \/view refused: .*not an image/],
] as const)('an output image from /view that is %s is refused before anything decodes it', async (_what, body, message) => {
  fake.serveOutputs(body);
  const err = await failure(backend().generate(job(), ctx()));
  expect(err.kind).toBe('bad-response');
  expect(err.message).toMatch(message);
});

test('cancelling a running prompt interrupts exactly that prompt and rejects with cancelled', async () => {
  await restart({ stepDelayMs: 20 });
  const ac = new AbortController();
  const b = backend();
  const t0 = Date.now();
  const err = await failure(
    b.generate(
      job({ steps: 50 }),
      ctx(ac.signal, () => ac.abort()),
    ),
  );
  expect(Date.now() - t0).toBeLessThan(900);
  expect([err.kind, err.retryable]).toEqual(['cancelled', false]);
  const id = fake.prompts[0]!.promptId;
  await expect.poll(() => fake.interrupts.map((i) => [i.promptId, i.running])).toEqual([[id, id]]);
  await expect.poll(() => fake.history(id)).toMatchObject({ status: { status_str: 'error', completed: false } });
  expect(fake.prompts[0]!.outcome).toBe('interrupted');
  expect(fake.queueDeletes).toEqual([]);
  await expect.poll(() => b.inFlight).toBe(0);
});

test('a job cancelled while waiting for our own earlier job sends nothing to the server', async () => {
  await restart({ stepDelayMs: 15 });
  const b = backend();
  const first = b.generate(job({ steps: 10 }), ctx());
  const ac = new AbortController();
  const second = b.generate({ ...job(), jobId: 'job-2' }, ctx(ac.signal));
  expect(b.inFlight).toBe(2);
  ac.abort();
  const err = await failure(second);
  expect([err.kind, err.retryable]).toEqual(['cancelled', false]);
  expect(b.inFlight).toBe(1);
  await first;
  expect(fake.wsConnections()).toHaveLength(1);
  expect(fake.prompts).toHaveLength(1);
  // The queue still moves after the abandoned waiter.
  await b.generate({ ...job({ count: 1 }), jobId: 'job-3' }, ctx());
  expect(fake.prompts).toHaveLength(2);
  expect([fake.interrupts, fake.queueDeletes]).toEqual([[], []]);
});

test('a job cancelled while queued on the server behind other work is deleted from the queue, not interrupted', async () => {
  await restart({ stepDelayMs: 20 });
  const other = await foreignPrompt(30);
  const ac = new AbortController();
  const run = backend().generate(job(), ctx(ac.signal));
  await expect.poll(() => fake.prompts.length).toBe(2);
  ac.abort();
  const err = await failure(run);
  expect(err.kind).toBe('cancelled');
  const mine = fake.prompts[1]!.promptId;
  await expect.poll(() => fake.queueDeletes.map((d) => d.ids)).toEqual([[mine]]);
  expect(fake.prompts[1]!.outcome).toBe('deleted');
  expect(fake.interrupts).toEqual([]);
  await expect.poll(() => fake.history(other)).toMatchObject({ status: { status_str: 'success' } });
});

test('waiting in the server queue longer than progressTimeoutMs is not a timeout', async () => {
  await restart({ stepDelayMs: 25 });
  await foreignPrompt(30);
  const out = await backend({ progressTimeoutMs: 300 }).generate(job({ count: 1 }), ctx());
  expect(out.images).toHaveLength(1);
  const [theirs, mine] = fake.prompts;
  expect(theirs!.finishedAt! - mine!.receivedAt).toBeGreaterThan(300);
  expect(fake.requests.some((r) => r.method === 'GET' && r.path === '/queue')).toBe(true);
});

test('two concurrent jobs never overlap on the server; inFlight counts the waiting one', async () => {
  await restart({ stepDelayMs: 10 });
  const b = backend();
  const p1 = b.generate(job({ seed: 1 }), ctx());
  const p2 = b.generate({ ...job({ seed: 2 }), jobId: 'job-2' }, ctx());
  expect(b.inFlight).toBe(2);
  const [o1, o2] = await Promise.all([p1, p2]);
  expect([o1.seed, o2.seed]).toEqual([1, 2]);
  const [j1, j2] = fake.prompts;
  expect(j2!.receivedAt).toBeGreaterThanOrEqual(j1!.finishedAt!);
  expect(b.inFlight).toBe(0);
});

test('a prompt interrupted by someone else on the server is a retryable bad-response', async () => {
  await restart({ stepDelayMs: 20 });
  let sent = false;
  const interruptFromUi = () => {
    if (sent) return;
    sent = true;
    void fetch(`${fake.url}/interrupt`, { method: 'POST' });
  };
  const err = await failure(backend().generate(job({ steps: 30 }), ctx(undefined, interruptFromUi)));
  expect([err.kind, err.retryable]).toEqual(['bad-response', true]);
  expect(err.message).toContain('interrupted');
});

test('health names the GPU and its free memory; not ok when down or answering garbage', async () => {
  const up = await backend().health();
  expect(up).toMatchObject({ ok: true, detail: 'NVIDIA GeForce RTX 4090, 22.0 GB free' });
  expect((await backend({ checkpoint: 'other.safetensors' }).health()).detail).toContain('checkpoint other.safetensors not listed');
  const gone = await backend({ url: await closedPortUrl() }).health();
  expect([gone.ok, gone.detail]).toEqual([false, expect.stringContaining('ECONNREFUSED')]);
  fake.setMode('garbage');
  expect((await backend().health()).ok).toBe(false);
});

test('preview frames: type 1 and type 4 carry the image, other types are skipped', () => {
  const img = Buffer.from('PNGDATA');
  const head = (a: number, b: number) => Buffer.from([0, 0, 0, a, 0, 0, 0, b]);
  expect(parsePreviewFrame(Buffer.concat([head(1, 2), img]))).toEqual({ image: img });
  const meta = Buffer.from(JSON.stringify({ prompt_id: 'p1', node_id: '3', image_type: 'image/png' }));
  expect(parsePreviewFrame(Buffer.concat([head(4, meta.length), meta, img]))).toEqual({ image: img, promptId: 'p1' });
  expect(parsePreviewFrame(Buffer.concat([head(3, 1), img]))).toBeNull();
  expect(parsePreviewFrame(head(1, 2))).toBeNull();
});

test('the fake answers like ComfyUI: unknown node, no outputs, unknown history, duplicate upload names', async () => {
  const post = async (body: unknown) => {
    const res = await fetch(`${fake.url}/prompt`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return [res.status, await res.json()] as const;
  };
  expect(await post({ prompt: { '1': { class_type: 'Upscaler9000', inputs: {} } } })).toEqual([
    400,
    {
      error: {
        type: 'missing_node_type',
        message: "Node 'Upscaler9000' not found. The custom node may not be installed.",
        details: "Node ID '#1'",
        extra_info: { node_id: '1', class_type: 'Upscaler9000', node_title: 'Upscaler9000' },
      },
      node_errors: {},
    },
  ]);
  expect((await post({ prompt: { '4': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'x' } } } }))[1]).toMatchObject({
    error: { type: 'prompt_no_outputs' },
  });
  expect(await (await fetch(`${fake.url}/api/history/nope`)).json()).toEqual({});
  expect((await fetch(`${fake.url}/view?filename=nope.png&type=output`)).status).toBe(404);
  const upload = async (bytes: Buffer) => {
    const form = new FormData();
    form.append('image', new Blob([new Uint8Array(bytes)], { type: 'image/png' }), 'a.png');
    return (await (await fetch(`${fake.url}/upload/image`, { method: 'POST', body: form })).json()) as { name: string };
  };
  const a = await png(8, 8, 1);
  expect((await upload(a)).name).toBe('a.png');
  expect((await upload(a)).name).toBe('a.png');
  expect((await upload(await png(8, 8, 2))).name).toBe('a (1).png');
  const res = await fetch(`${fake.url}/object_info/CheckpointLoaderSimple`);
  expect(await res.json()).toMatchObject({
    CheckpointLoaderSimple: { input: { required: { ckpt_name: [['sd_xl_base_1.0.safetensors'], {}] } }, output: ['MODEL', 'CLIP', 'VAE'] },
  });
});

test('a server that stops answering mid-job is given up as dead within deadAfterMs, not the websocket silence timeout, and sent nothing more', async () => {
  await restart({ stepDelayMs: 20 });
  const c = ctx();
  const running = backend({ progressTimeoutMs: 30_000, deadAfterMs: 300, pollIntervalMs: 50 }).generate(job({ steps: 60, count: 1 }), c);
  await expect.poll(() => c.progress.length).toBeGreaterThan(1);
  fake.setMode('freeze');
  const t0 = Date.now();
  const err = await failure(running);
  expect([err.kind, err.opensCircuit]).toEqual(['unavailable', true]);
  expect(err.message).toMatch(/no answer from \/queue for 300 ms/);
  expect(Date.now() - t0).toBeLessThan(10_000);
  expect(fake.interrupts).toEqual([]);
});

test('a preset’s checkpoint and sampler reach the graph, and the result names the checkpoint; a few-step preset without one is not run', async () => {
  await restart({ stepDelayMs: 2, checkpoints: ['sd_xl_base_1.0.safetensors', 'sdxl_lightning_4step.safetensors'] });
  const presets = buildCatalog({ fast: { comfyui: { checkpoint: 'sdxl_lightning_4step.safetensors' } } });
  const b = backend({ presets });
  const r = request({ preset: 'fast', count: 1 });
  const s = b.settingsFor(r) as Exclude<ReturnType<typeof b.settingsFor>, { refused: string }>;
  const out = await b.generate({ ...job(), request: r, settings: s }, ctx());
  const graph = fake.prompts[0]!.graph as Record<string, { class_type: string; inputs: Record<string, unknown> }>;
  expect(graph['4']!.inputs.ckpt_name).toBe('sdxl_lightning_4step.safetensors');
  expect(graph['3']!.inputs).toMatchObject({ steps: 4, cfg: 1, sampler_name: 'euler', scheduler: 'sgm_uniform' });
  expect(out).toMatchObject({ model: { name: 'sdxl_lightning_4step.safetensors' }, sampler: 'euler (sgm_uniform)' });
  expect(backend().settingsFor(r)).toHaveProperty('refused');
});
