import { createServer } from 'node:net';
import sharp from 'sharp';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { BackendError } from '../../core/errors.js';
import type { GenerationRequest } from '../../core/generation.js';
import { createLogger } from '../../core/io/logger.js';
import { type A1111Options, createA1111Backend } from '../../worker/backends/a1111.js';
import type { BackendJob, BackendProgress, RunContext } from '../../worker/backends/backend.js';
import { type FakeA1111, type FakeA1111Options, startFakeA1111 } from '../fakes/a1111.js';

const log = createLogger({ level: 'silent' });
let fake: FakeA1111;

beforeEach(async () => {
  fake = await startFakeA1111({ stepDelayMs: 5 });
});
afterEach(async () => {
  expect(fake.unhandled).toEqual([]);
  await fake.close();
});

/** Replaces the default fake with one started with other options. */
async function restart(o: FakeA1111Options): Promise<void> {
  await fake.close();
  fake = await startFakeA1111(o);
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

function job(over: Partial<GenerationRequest> = {}, extra: Partial<BackendJob> = {}): BackendJob {
  return { jobId: 'job-1', request: request(over), ...extra };
}

function backend(over: Partial<A1111Options> = {}) {
  return createA1111Backend({ id: 'a1111', url: fake.url, pollIntervalMs: 10, progressTimeoutMs: 500, log, ...over });
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

async function png(width: number, height: number, value: number): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r: value, g: value, b: value } } })
    .png()
    .toBuffer();
}

const generationBodies = () =>
  fake.requests.filter((r) => r.method === 'POST' && /\/(txt2img|img2img)$/.test(r.path)).map((r) => r.json as Record<string, unknown>);

test('txt2img returns `count` PNGs of exactly width×height and the seed the box used', async () => {
  const b = backend();
  const out = await b.generate(job(), ctx());
  expect(out.images).toHaveLength(2);
  for (const img of out.images) {
    const meta = await sharp(img).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 64, 48]);
  }
  // The fake colours image i by seed + i, so two distinct images came back.
  expect(out.images[0]!.equals(out.images[1]!)).toBe(false);
  expect(out.seed).toBe(1234);
  expect(out.billedImages).toBe(2);
  expect(out.billedSeconds).toBeGreaterThan(0);
  expect(b.inFlight).toBe(0);
  expect(fake.generations).toBe(1);
});

test('the txt2img body carries every GenerationRequest field, and the checkpoint as an override', async () => {
  await backend({ checkpoint: 'sd_xl_base_1.0.safetensors' }).generate(job({ count: 3, seed: 77, steps: 4, guidance: 5 }), ctx());
  await backend().generate(job({ count: 1 }), ctx());
  const [withCheckpoint, plain] = generationBodies();
  expect(withCheckpoint).toEqual({
    prompt: 'a lighthouse at dusk',
    negative_prompt: 'blurry, lowres',
    width: 64,
    height: 48,
    steps: 4,
    cfg_scale: 5,
    seed: 77,
    batch_size: 3,
    n_iter: 1,
    sampler_name: 'DPM++ 2M',
    scheduler: 'Karras',
    send_images: true,
    save_images: false,
    override_settings: { sd_model_checkpoint: 'sd_xl_base_1.0.safetensors' },
  });
  expect(plain).not.toHaveProperty('override_settings');
  expect(plain).toMatchObject({ batch_size: 1, seed: 1234, steps: 6, cfg_scale: 6.5 });
});

test('progress arrives with increasing steps and a preview that decodes', async () => {
  await restart({ stepDelayMs: 25 });
  const c = ctx();
  await backend().generate(job({ steps: 12, count: 1 }), c);
  expect(c.progress.length).toBeGreaterThanOrEqual(3);
  const steps = c.progress.map((p) => p.step);
  // Under load two polls may see the same step (with a new preview); steps never go back.
  for (let i = 1; i < steps.length; i++) expect(steps[i]).toBeGreaterThanOrEqual(steps[i - 1]!);
  expect(steps.at(-1)!).toBeGreaterThan(steps[0]!);
  expect(c.progress.every((p) => p.total === 12 && p.fraction > 0 && p.fraction <= 1)).toBe(true);
  const preview = c.progress.find((p) => p.preview)?.preview;
  expect(preview).toBeInstanceOf(Buffer);
  const meta = await sharp(preview!).metadata();
  expect(meta.format).toBe('png');
});

test('sends Basic auth on every call; wrong or missing credentials are a non-retryable rejection naming A1111_AUTH', async () => {
  await restart({ auth: 'bot:s3cret' });
  const good = backend({ auth: 'bot:s3cret' });
  await good.generate(job({ count: 1 }), ctx());
  expect((await good.health()).ok).toBe(true);
  const sdapi = fake.requests.filter((r) => r.path.startsWith('/sdapi/'));
  expect(sdapi.length).toBeGreaterThan(2);
  expect(new Set(sdapi.map((r) => r.headers.authorization))).toEqual(new Set([`Basic ${Buffer.from('bot:s3cret').toString('base64')}`]));

  // Credentials in the URL work too (fetch itself refuses such URLs).
  const inUrl = backend({ url: fake.url.replace('http://', 'http://bot:s3cret@') });
  expect((await inUrl.generate(job({ count: 1 }), ctx())).images).toHaveLength(1);

  const generationsBefore = fake.generations;
  for (const auth of ['bot:hunter2', undefined]) {
    const err = await failure(backend({ auth }).generate(job(), ctx()));
    expect([err.kind, err.retryable, err.status]).toEqual(['rejected', false, 401]);
    expect(err.message).toContain('A1111_AUTH');
    expect(err.message).not.toContain('hunter2');
  }
  expect(fake.generations).toBe(generationsBefore);
});

test('cancelling mid-job interrupts the box and rejects with cancelled', async () => {
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
  await expect.poll(() => fake.interrupts).toBe(1);
  await expect.poll(() => fake.jobs[0]?.outcome).toBe('interrupted');
  expect(fake.generations).toBe(0);
  expect(b.inFlight).toBe(0);
});

test('two concurrent jobs never overlap on the box; inFlight counts the waiting one', async () => {
  await restart({ stepDelayMs: 10 });
  const b = backend();
  const p1 = b.generate(job({ seed: 1 }), ctx());
  const p2 = b.generate({ ...job({ seed: 2 }), jobId: 'job-2' }, ctx());
  expect(b.inFlight).toBe(2);
  const [o1, o2] = await Promise.all([p1, p2]);
  expect([o1.seed, o2.seed]).toEqual([1, 2]);
  expect(fake.maxConcurrent).toBe(1);
  const [j1, j2] = fake.jobs;
  expect(j2!.receivedAt).toBeGreaterThanOrEqual(j1!.finishedAt!);
  expect(b.inFlight).toBe(0);
});

test('a job cancelled while waiting for the box leaves the queue without touching the box', async () => {
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
  // The queue still moves after the abandoned waiter.
  await b.generate({ ...job({ count: 1 }), jobId: 'job-3' }, ctx());
  expect(fake.jobs).toHaveLength(2);
  expect(fake.interrupts).toBe(0);
});

test('a refused connection is unavailable and retryable, at once', async () => {
  const b = backend({ url: await closedPortUrl() });
  const t0 = Date.now();
  const err = await failure(b.generate(job(), ctx()));
  expect(Date.now() - t0).toBeLessThan(1000);
  expect([err.kind, err.retryable]).toEqual(['unavailable', true]);
  expect(err.message).toContain('ECONNREFUSED');
});

test.each(['hang', 'stall'] as const)(
  'a box that takes the request but never moves (%s) times out within progressTimeoutMs',
  async (mode) => {
    fake.setMode(mode);
    const t0 = Date.now();
    const err = await failure(backend({ progressTimeoutMs: 500 }).generate(job(), ctx()));
    const elapsed = Date.now() - t0;
    expect(elapsed).toBeGreaterThanOrEqual(450);
    expect(elapsed).toBeLessThan(1500);
    expect([err.kind, err.retryable]).toEqual(['timeout', true]);
    // The abandoned job is interrupted so the box is free for the next one.
    await expect.poll(() => fake.interrupts).toBe(1);
  },
);

test('requestTimeoutMs caps a job whose box keeps reporting progress', async () => {
  await restart({ stepDelayMs: 20 });
  const t0 = Date.now();
  const err = await failure(backend({ requestTimeoutMs: 300, progressTimeoutMs: 5000 }).generate(job({ steps: 100 }), ctx()));
  expect(Date.now() - t0).toBeLessThan(1000);
  expect([err.kind, err.retryable]).toEqual(['timeout', true]);
  await expect.poll(() => fake.interrupts).toBe(1);
});

test('a box that dies mid-job is noticed within a couple of seconds as a retryable failure', async () => {
  await restart({ stepDelayMs: 20, mode: 'die-mid-job' });
  const b = backend({ progressTimeoutMs: 1000 });
  const t0 = Date.now();
  const err = await failure(b.generate(job({ steps: 30 }), ctx()));
  expect(Date.now() - t0).toBeLessThan(2000);
  expect(err.retryable).toBe(true);
  expect(['unavailable', 'timeout']).toContain(err.kind);
  expect(fake.jobs[0]?.outcome).toBe('died');
  expect((await b.health()).ok).toBe(false);
});

test.each([
  ['error500', 'unavailable', 500, /HTTP 500/],
  ['garbage', 'bad-response', 200, /not JSON/],
  ['wrong-size', 'bad-response', undefined, /128×48, asked for 64×48/],
] as const)('mode %s → %s, retryable', async (mode, kind, status, message) => {
  fake.setMode(mode);
  const err = await failure(backend().generate(job(), ctx()));
  expect([err.kind, err.retryable, err.status]).toEqual([kind, true, status]);
  expect(err.message).toMatch(message);
});

test('fewer images than asked (interrupted by someone on the box) is a retryable bad-response', async () => {
  await restart({ stepDelayMs: 20 });
  let sent = false;
  const interruptFromUi = () => {
    if (sent) return;
    sent = true;
    void fetch(`${fake.url}/sdapi/v1/interrupt`, { method: 'POST' });
  };
  const err = await failure(backend().generate(job({ steps: 30 }), ctx(undefined, interruptFromUi)));
  expect([err.kind, err.retryable]).toEqual(['bad-response', true]);
  expect(err.message).toContain('0 of 2 images');
});

test('inpaint goes to img2img with the init image, the mask and the strength', async () => {
  const image = await png(64, 48, 200);
  const mask = await png(64, 48, 255);
  const b = backend();
  const out = await b.generate(job({ kind: 'inpaint', strength: 0.6, count: 1 }, { image, mask }), ctx());
  const meta = await sharp(out.images[0]!).metadata();
  expect([meta.format, meta.width, meta.height]).toEqual(['png', 64, 48]);
  await b.generate(job({ kind: 'inpaint', count: 1 }, { image, mask }), ctx());

  expect(fake.jobs.map((j) => [j.path, j.initImages, j.hasMask, j.outcome])).toEqual([
    ['/sdapi/v1/img2img', 1, true, 'done'],
    ['/sdapi/v1/img2img', 1, true, 'done'],
  ]);
  const [first, second] = generationBodies();
  expect(first).toMatchObject({
    init_images: [image.toString('base64')],
    mask: mask.toString('base64'),
    denoising_strength: 0.6,
    mask_blur: 4,
    inpaint_full_res: true,
    inpaint_full_res_padding: 32,
    inpainting_fill: 1,
    resize_mode: 0,
    prompt: 'a lighthouse at dusk',
    width: 64,
    height: 48,
    batch_size: 1,
  });
  expect(second!.denoising_strength).toBe(0.75);

  const err = await failure(b.generate(job({ kind: 'inpaint' }, { image }), ctx()));
  expect([err.kind, err.retryable]).toEqual(['rejected', false]);
  expect(fake.jobs).toHaveLength(2);
});

test('img2img goes to img2img with the init image and the strength, and no mask', async () => {
  const image = await png(64, 48, 120);
  const b = backend();
  const out = await b.generate(job({ kind: 'img2img', strength: 0.45, count: 1 }, { image }), ctx());
  const meta = await sharp(out.images[0]!).metadata();
  expect([meta.format, meta.width, meta.height]).toEqual(['png', 64, 48]);
  await b.generate(job({ kind: 'img2img', count: 1 }, { image }), ctx());

  expect(fake.jobs.map((j) => [j.path, j.initImages, j.hasMask, j.outcome])).toEqual([
    ['/sdapi/v1/img2img', 1, false, 'done'],
    ['/sdapi/v1/img2img', 1, false, 'done'],
  ]);
  const [first, second] = generationBodies();
  expect(first).toMatchObject({
    init_images: [image.toString('base64')],
    denoising_strength: 0.45,
    resize_mode: 0,
    prompt: 'a lighthouse at dusk',
    width: 64,
    height: 48,
    batch_size: 1,
  });
  for (const inpaintOnly of ['mask', 'mask_blur', 'inpaint_full_res', 'inpainting_fill']) expect(first).not.toHaveProperty(inpaintOnly);
  // Vary's strength when the request names none.
  expect(second!.denoising_strength).toBe(0.6);

  const err = await failure(b.generate(job({ kind: 'img2img' }), ctx()));
  expect([err.kind, err.retryable]).toEqual(['rejected', false]);
  expect(fake.jobs).toHaveLength(2);
});

const upscaleJob = async (from: [number, number], to: [number, number]) => {
  // The untouched source as the bot parked it (WebP here), and the resized pass input an upscaler must not use.
  const source = await sharp({ create: { width: from[0], height: from[1], channels: 3, background: { r: 30, g: 140, b: 90 } } })
    .webp()
    .toBuffer();
  const image = await png(to[0], to[1], 10);
  return job(
    { kind: 'upscale', width: to[0], height: to[1], count: 1, strength: 0.3 },
    { image, source: { image: source, width: from[0], height: from[1] } },
  );
};
const extrasBodies = () =>
  fake.requests.filter((r) => r.path === '/sdapi/v1/extra-single-image').map((r) => r.json as Record<string, unknown>);

test('upscale runs the configured upscaler on the untouched source at target ÷ source width and returns exactly the target size', async () => {
  const b = backend({ upscaler: 'SwinIR 4x' });
  const j = await upscaleJob([60, 45], [120, 90]);
  const c = ctx();
  const out = await b.generate(j, c);
  // A1111 floors its output to multiples of 8 (120×88 here); the backend resizes to the target.
  const meta = await sharp(out.images[0]!).metadata();
  expect([meta.format, meta.width, meta.height]).toEqual(['png', 120, 90]);
  expect(out).toMatchObject({ seed: 1234, billedImages: 1 });
  expect(extrasBodies()).toEqual([
    { image: j.source!.image.toString('base64'), resize_mode: 0, upscaling_resize: 2, upscaler_1: 'SwinIR 4x' },
  ]);
  expect(fake.jobs).toEqual([]);
  expect(c.progress.map((p) => [p.step, p.total, p.fraction])).toEqual([
    [0, 1, 0],
    [1, 1, 1],
  ]);

  await backend().generate(await upscaleJob([64, 48], [96, 72]), ctx());
  expect(extrasBodies()[1]).toMatchObject({ upscaling_resize: 1.5, upscaler_1: 'R-ESRGAN 4x+' });
  expect(fake.upscales).toBe(2);
});

test('an upscale waits for the box like a generation, and is not taken for hung while the extras tab reports no steps', async () => {
  await restart({ stepDelayMs: 15 });
  const b = backend();
  const gen = b.generate(job({ steps: 8, count: 1 }), ctx());
  const up = b.generate({ ...(await upscaleJob([64, 48], [128, 96])), jobId: 'job-2' }, ctx());
  expect(b.inFlight).toBe(2);
  await Promise.all([gen, up]);
  const extrasAt = fake.requests.find((r) => r.path === '/sdapi/v1/extra-single-image')!.at;
  expect(extrasAt).toBeGreaterThanOrEqual(fake.jobs[0]!.finishedAt!);
  expect(b.inFlight).toBe(0);

  // An upscale slower than progressTimeoutMs still succeeds; upscaleTimeoutMs caps it instead.
  await restart({ stepDelayMs: 700 });
  const slow = await backend({ progressTimeoutMs: 300 }).generate(await upscaleJob([64, 48], [128, 96]), ctx());
  expect(slow.images).toHaveLength(1);
  fake.setMode('hang');
  const t0 = Date.now();
  const err = await failure(backend({ upscaleTimeoutMs: 300 }).generate(await upscaleJob([64, 48], [128, 96]), ctx()));
  expect([err.kind, err.retryable]).toEqual(['timeout', true]);
  expect(Date.now() - t0).toBeLessThan(1500);
});

test('an upscaler the box lacks is a non-retryable rejection naming A1111_UPSCALER; a job without its source never reaches the box', async () => {
  const err = await failure(backend({ upscaler: 'Magic 16x' }).generate(await upscaleJob([64, 48], [128, 96]), ctx()));
  expect([err.kind, err.retryable, err.status]).toEqual(['rejected', false, 500]);
  expect(err.message).toContain('A1111_UPSCALER');
  expect(err.message).toContain('Magic 16x');

  const before = fake.requests.length;
  const { source: _s, ...noSource } = await upscaleJob([64, 48], [128, 96]);
  const missing = await failure(backend().generate(noSource, ctx()));
  expect([missing.kind, missing.retryable]).toEqual(['rejected', false]);
  expect(fake.requests.slice(before).filter((r) => r.method === 'POST')).toEqual([]);
});

test('the fake checks the upscale factor like A1111 (1-8)', async () => {
  const res = await fetch(`${fake.url}/sdapi/v1/extra-single-image`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ image: (await png(8, 8, 1)).toString('base64'), upscaling_resize: 9 }),
  });
  expect(res.status).toBe(422);
  expect(await res.json()).toMatchObject({ detail: [{ loc: ['body', 'upscaling_resize'], type: 'value_error.number.not_le' }] });
});

test('health: models listed when up; not ok when credentials are refused or the box is gone', async () => {
  const up = await backend({ checkpoint: 'sd_xl_base_1.0.safetensors' }).health();
  expect(up).toMatchObject({ ok: true, detail: '2 models' });
  expect(up.latencyMs).toBeGreaterThanOrEqual(0);
  expect((await backend({ checkpoint: 'dreamshaper' }).health()).detail).toContain('dreamshaper not listed');

  fake.setMode('reject-401');
  const refused = await backend({ auth: 'bot:hunter2' }).health();
  expect(refused.ok).toBe(false);
  expect(refused.detail).toContain('A1111_AUTH');
  expect(refused.detail).not.toContain('hunter2');

  const gone = await backend({ url: await closedPortUrl() }).health();
  expect(gone.ok).toBe(false);
  expect(gone.detail).toContain('ECONNREFUSED');
});

test('JPEG samples from the box come back as PNG', async () => {
  await restart({ samplesFormat: 'jpg' });
  const out = await backend().generate(job(), ctx());
  for (const img of out.images) {
    const meta = await sharp(img).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 64, 48]);
  }
});

test('upscale runs R-ESRGAN 4x+ at 2× on the box and returns a PNG', async () => {
  const out = await backend().generate(await upscaleJob([64, 48], [128, 96]), ctx());
  const meta = await sharp(out.images[0]!).metadata();
  expect([meta.format, meta.width, meta.height]).toEqual(['png', 128, 96]);
  const body = fake.requests.find((r) => r.path === '/sdapi/v1/extra-single-image')!.json;
  expect(body).toMatchObject({ upscaling_resize: 2, upscaler_1: 'R-ESRGAN 4x+' });
});

test('the fake answers like A1111: idle progress, missing init image, unknown sampler, mistyped field', async () => {
  const call = async (path: string, body?: unknown) => {
    const res = await fetch(
      `${fake.url}${path}`,
      body === undefined ? {} : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) },
    );
    return [res.status, await res.json()] as const;
  };
  const [, idle] = await call('/sdapi/v1/progress');
  expect(idle).toMatchObject({ progress: 0, eta_relative: 0, current_image: null, state: { job_count: 0, job: '' } });
  expect(await call('/sdapi/v1/img2img', { prompt: 'x' })).toEqual([
    404,
    { error: 'HTTPException', detail: 'Init image not found', body: '', errors: '404: Init image not found' },
  ]);
  expect((await call('/sdapi/v1/txt2img', { sampler_name: 'Nope' }))[0]).toBe(400);
  expect(await call('/sdapi/v1/txt2img', { steps: 'many' })).toEqual([
    422,
    { detail: [{ loc: ['body', 'steps'], msg: 'value is not a valid integer', type: 'type_error.integer' }] },
  ]);
  expect(await call('/internal/ping')).toEqual([200, {}]);
});

test('a job that lost the box’s lease to another job leaves the box alone: no more polls, no interrupt', async () => {
  await restart({ stepDelayMs: 20 });
  let held = true;
  const asked: number[] = [];
  const c: RunContext & { progress: BackendProgress[] } = {
    ...ctx(),
    lease: {
      holds: async () => {
        asked.push(Date.now());
        return held;
      },
    },
  };
  const running = backend().generate(job({ steps: 40, count: 1 }), c);
  await expect.poll(() => fake.requests.filter((r) => r.path === '/sdapi/v1/progress').length).toBeGreaterThan(2);
  held = false;
  const err = await failure(running);
  expect([err.kind, err.retryable]).toEqual(['busy', false]);
  expect(err.message).toMatch(/lease/);
  const polls = fake.requests.filter((r) => r.path === '/sdapi/v1/progress').length;
  await new Promise((r) => setTimeout(r, 200));
  expect(fake.requests.filter((r) => r.path === '/sdapi/v1/progress').length).toBe(polls);
  expect(fake.interrupts).toBe(0);
  // It was asked before the generation and before every poll.
  expect(asked.length).toBeGreaterThanOrEqual(polls + 1);
});

test('a box that stops answering is given up as dead within deadAfterMs, not the progress timeout', async () => {
  await restart({ mode: 'freeze' });
  const t0 = Date.now();
  const err = await failure(backend({ progressTimeoutMs: 30_000, deadAfterMs: 300 }).generate(job(), ctx()));
  expect([err.kind, err.opensCircuit]).toEqual(['unavailable', true]);
  expect(err.message).toMatch(/no answer from \/progress for 300 ms/);
  expect(Date.now() - t0).toBeLessThan(10_000);
  expect(fake.interrupts).toBe(0);
});

test('an upscale on a box that stops answering is given up as dead within deadAfterMs, like a generation, not upscaleTimeoutMs', async () => {
  await restart({ mode: 'freeze' });
  const t0 = Date.now();
  const outcome = await Promise.race([
    backend({ deadAfterMs: 300 })
      .generate(await upscaleJob([64, 48], [128, 96]), ctx())
      .then(
        () => 'succeeded',
        (e: unknown) => e,
      ),
    new Promise((r) => setTimeout(() => r('still waiting after 6 s'), 6000)),
  ]);
  expect(outcome).toBeInstanceOf(BackendError);
  const err = outcome as BackendError;
  expect([err.kind, err.opensCircuit]).toEqual(['unavailable', true]);
  expect(err.message).toMatch(/no answer from \/progress for 300 ms/);
  expect(Date.now() - t0).toBeLessThan(5000);
  // A silent box would not hear an interrupt either.
  expect(fake.interrupts).toBe(0);
}, 15_000);

test('an upscale on a box that refuses connections is given up at once and opens the circuit', async () => {
  const t0 = Date.now();
  const err = await failure(
    backend({ url: await closedPortUrl(), deadAfterMs: 5000 }).generate(await upscaleJob([64, 48], [128, 96]), ctx()),
  );
  expect([err.kind, err.opensCircuit]).toEqual(['unavailable', true]);
  expect(Date.now() - t0).toBeLessThan(4000);
});

test('the result names the checkpoint and sampler the box ran, as its generation info reports them', async () => {
  await restart({
    models: [
      { name: 'sd_xl_base_1.0', hash: '31e35c80fc' },
      { name: 'sdxl_lightning_4step', hash: 'a9ce1a3b17' },
    ],
  });
  const out = await backend({ checkpoint: 'sdxl_lightning_4step.safetensors' }).generate(job({ count: 1 }), ctx());
  expect(out.model).toEqual({ name: 'sdxl_lightning_4step', version: 'a9ce1a3b17' });
  expect(out.sampler).toBe('DPM++ 2M (Karras)');
  // A checkpoint the box does not have: A1111 falls back to its loaded model, and the lineage says so.
  const fallback = await backend({ checkpoint: 'missing.safetensors' }).generate(job({ count: 1 }), ctx());
  expect(fallback.model).toEqual({ name: 'sd_xl_base_1.0', version: '31e35c80fc' });
});

test('a box whose sampler got stuck stays unhealthy to the probe while it still stands where the job was given up', async () => {
  await restart({ mode: 'stall', stepDelayMs: 10 });
  const b = backend({ progressTimeoutMs: 300 });
  expect((await b.health()).ok).toBe(true);
  const err = await failure(b.generate(job({ steps: 20 }), ctx()));
  expect([err.kind, err.opensCircuit]).toEqual(['timeout', true]);
  const h = await b.health();
  expect(h).toMatchObject({ ok: false, detail: 'the sampler is still stuck where a job was given up' });
});

test('on a shared box, a refused connection is given up at once, before anything is sent, and opens the circuit', async () => {
  const t0 = Date.now();
  const c: RunContext & { progress: BackendProgress[] } = { ...ctx(), lease: { holds: async () => true } };
  const err = await failure(backend({ url: await closedPortUrl(), deadAfterMs: 5000 }).generate(job(), c));
  expect([err.kind, err.opensCircuit]).toEqual(['unavailable', true]);
  // Well under the 5 s it would take to wait out deadAfterMs.
  expect(Date.now() - t0).toBeLessThan(4000);
});
