import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BackendError } from '../../core/errors.js';
import type { GenerationRequest } from '../../core/generation.js';
import { createLogger } from '../../core/io/logger.js';
import { buildCatalog } from '../../core/presets.js';
import type { BackendProgress, RunContext } from '../../worker/backends/backend.js';
import { createReplicateBackend, DEFAULT_SDXL_VERSION, type ReplicateBackendOptions } from '../../worker/backends/replicate.js';
import { type FakeReplicate, startFakeReplicate } from '../fakes/replicate.js';
import { bombPng } from '../fixtures/png.js';

const PNG_1PX = await sharp({ create: { width: 1, height: 1, channels: 3, background: '#000' } })
  .png()
  .toBuffer();
const GIF_1PX = Buffer.from('R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7', 'base64');

const log = createLogger({ level: 'silent' });
let fake: FakeReplicate;

beforeEach(async () => {
  fake = await startFakeReplicate({ durationMs: 100, predictTimeS: 3.25 });
});
afterEach(async () => {
  expect(fake.unhandled).toEqual([]);
  await fake.close();
});

function request(over: Partial<GenerationRequest> = {}): GenerationRequest {
  return {
    kind: 'txt2img',
    prompt: 'a lighthouse at dusk',
    negative: 'blurry',
    width: 512,
    height: 384,
    count: 2,
    seed: 42,
    steps: 25,
    guidance: 7,
    preset: 'default',
    replicateModel: 'sdxl',
    ...over,
  };
}

function backend(over: Partial<ReplicateBackendOptions> = {}) {
  return createReplicateBackend({
    id: 'replicate',
    token: 'r8_fake',
    baseUrl: fake.url,
    outputOrigins: [new URL(fake.url).origin],
    sdxlVersion: DEFAULT_SDXL_VERSION,
    waitSeconds: 5,
    pollIntervalMs: 50,
    log,
    ...over,
  });
}

function ctx(signal = new AbortController().signal): RunContext & { progress: BackendProgress[] } {
  const progress: BackendProgress[] = [];
  return { signal, progress, onProgress: (p) => progress.push(p) };
}

async function failure(p: Promise<unknown>): Promise<BackendError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BackendError);
  return err as BackendError;
}

const creates = (): typeof fake.requests => fake.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/predictions'));
const polls = (): typeof fake.requests => fake.requests.filter((r) => r.method === 'GET' && r.path.startsWith('/v1/predictions/'));

describe('Replicate backend against the fake API', () => {
  it('makes sdxl images by version in sync mode, with the mapped inputs and predict_time billed', async () => {
    const b = backend();
    const out = await b.generate({ jobId: 'j1', request: request() }, ctx());

    expect(out.images).toHaveLength(2);
    for (const img of out.images) {
      const meta = await sharp(img).metadata();
      expect([meta.format, meta.width, meta.height]).toEqual(['png', 512, 384]);
    }
    const [create] = creates();
    expect(create?.path).toBe('/v1/predictions');
    expect(create?.headers.prefer).toBe('wait=5');
    expect(create?.headers.authorization).toBe('Bearer r8_fake');
    expect(create?.body).toEqual({
      version: DEFAULT_SDXL_VERSION,
      input: {
        prompt: 'a lighthouse at dusk',
        negative_prompt: 'blurry',
        width: 512,
        height: 384,
        num_outputs: 2,
        num_inference_steps: 25,
        guidance_scale: 7,
        seed: 42,
        scheduler: 'K_EULER',
        refine: 'no_refiner',
        disable_safety_checker: false,
      },
    });
    expect(polls()).toHaveLength(0);
    expect(out.billedSeconds).toBe(3.25);
    expect(b.lastPredictTime).toBe(3.25);
    expect(out.billedImages).toBe(2);
    expect(out.seed).toBe(42);
    expect(b.inFlight).toBe(0);
  });

  it('sends flux-schnell to the official model route and fits its aspect-ratio output to the exact size', async () => {
    const out = await backend().generate(
      { jobId: 'j2', request: request({ replicateModel: 'flux-schnell', width: 1024, height: 576, count: 1 }) },
      ctx(),
    );
    const [create] = creates();
    expect(create?.path).toBe('/v1/models/black-forest-labs/flux-schnell/predictions');
    expect(create?.body).toEqual({
      input: {
        prompt: 'a lighthouse at dusk',
        aspect_ratio: '16:9',
        num_outputs: 1,
        seed: 42,
        output_format: 'png',
        num_inference_steps: 4,
      },
    });
    const meta = await sharp(out.images[0]).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 1024, 576]);
    expect(out.billedImages).toBe(1);
  });

  it('sends inpaint to sdxl (even for a flux preset) with image and mask as PNG data URIs', async () => {
    const image = await sharp({ create: { width: 512, height: 384, channels: 3, background: '#336699' } })
      .png()
      .toBuffer();
    const mask = await sharp({ create: { width: 512, height: 384, channels: 3, background: '#ffffff' } })
      .png()
      .toBuffer();
    const r = request({ kind: 'inpaint', replicateModel: 'flux-schnell', strength: 0.6, count: 1 });
    const out = await backend().generate({ jobId: 'j3', request: r, image, mask }, ctx());

    const body = creates()[0]?.body;
    expect(body.version).toBe(DEFAULT_SDXL_VERSION);
    expect(body.input.image).toBe(`data:image/png;base64,${image.toString('base64')}`);
    expect(body.input.mask).toBe(`data:image/png;base64,${mask.toString('base64')}`);
    expect(body.input.prompt_strength).toBe(0.6);
    expect(out.images).toHaveLength(1);
  });

  it('sends img2img to sdxl (even for a flux preset) with the image and prompt_strength and no mask', async () => {
    const image = await sharp({ create: { width: 512, height: 384, channels: 3, background: '#996633' } })
      .png()
      .toBuffer();
    const r = request({ kind: 'img2img', replicateModel: 'flux-schnell', strength: 0.6, count: 1 });
    const out = await backend().generate({ jobId: 'j3b', request: r, image }, ctx());

    const [create] = creates();
    expect(create?.path).toBe('/v1/predictions');
    expect(create?.body.version).toBe(DEFAULT_SDXL_VERSION);
    expect(create?.body.input).toMatchObject({
      image: `data:image/png;base64,${image.toString('base64')}`,
      prompt_strength: 0.6,
      num_outputs: 1,
      seed: 42,
    });
    expect(create?.body.input).not.toHaveProperty('mask');
    const meta = await sharp(out.images[0]).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 512, 384]);

    const err = await failure(backend().generate({ jobId: 'j3c', request: r }, ctx()));
    expect([err.kind, err.retryable]).toEqual(['rejected', false]);
    expect(creates()).toHaveLength(1);
  });

  it('upscales by an img2img pass at the target size: sdxl keeps the input size, so the resized image is what is sent', async () => {
    const source = await sharp({ create: { width: 256, height: 192, channels: 3, background: '#336699' } })
      .png()
      .toBuffer();
    const image = await sharp({ create: { width: 512, height: 384, channels: 3, background: '#336699' } })
      .png()
      .toBuffer();
    const r = request({ kind: 'upscale', strength: 0.3, count: 1 });
    const out = await backend().generate({ jobId: 'j3d', request: r, image, source: { image: source, width: 256, height: 192 } }, ctx());

    const input = creates()[0]?.body.input;
    expect(input.image).toBe(`data:image/png;base64,${image.toString('base64')}`);
    expect(input.prompt_strength).toBe(0.3);
    const meta = await sharp(out.images[0]).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 512, 384]);
  });

  it('the fake validates sdxl inputs like Cog: a prompt_strength above 1 or an image that is not a URI is a 422', async () => {
    const res = await fetch(`${fake.url}/predictions`, {
      method: 'POST',
      headers: { authorization: 'Bearer r8_fake', 'content-type': 'application/json' },
      body: JSON.stringify({ version: DEFAULT_SDXL_VERSION, input: { prompt: 'x', image: 'not a uri', prompt_strength: 1.5 } }),
    });
    expect(res.status).toBe(422);
    expect(await res.json()).toMatchObject({
      title: 'Input validation failed',
      detail: "- input.prompt_strength: Must be less than or equal to 1\n- input.image: Does not match format 'uri'\n",
    });
    expect(fake.predictions).toHaveLength(0);
  });

  it('polls when the sync wait ends before the prediction and reports progress from the logs', async () => {
    fake.options.durationMs = 2200;
    const c = ctx();
    const out = await backend({ waitSeconds: 1 }).generate({ jobId: 'j4', request: request({ count: 1 }) }, c);

    expect(creates()[0]?.headers.prefer).toBe('wait=1');
    expect(polls().length).toBeGreaterThan(2);
    expect(c.progress.length).toBeGreaterThan(1);
    expect(c.progress.every((p) => p.total === 25 && p.fraction >= 0 && p.fraction <= 1)).toBe(true);
    expect(c.progress.at(-1)!.step).toBeGreaterThan(c.progress[0]!.step);
    expect(out.images).toHaveLength(1);
  });

  it('without sync mode gets "starting" and polls to the end', async () => {
    fake.options.durationMs = 400;
    const out = await backend({ waitSeconds: 0 }).generate({ jobId: 'j5', request: request({ count: 1 }) }, ctx());
    expect(creates()[0]?.headers.prefer).toBeUndefined();
    expect(polls().length).toBeGreaterThan(0);
    expect(out.images).toHaveLength(1);
  });

  it('cancels the prediction on Replicate when the job is aborted while polling', async () => {
    fake.options.mode = 'hang';
    const ac = new AbortController();
    const run = backend({ waitSeconds: 0 }).generate({ jobId: 'j6', request: request() }, ctx(ac.signal));
    setTimeout(() => ac.abort(), 300);
    const err = await failure(run);

    expect(err.kind).toBe('cancelled');
    expect(fake.cancels).toEqual([fake.predictions[0]!.id]);
  });

  it('a cancelled prediction is billed the run time it had: the error says so', async () => {
    fake.options.mode = 'hang';
    const ac = new AbortController();
    const started = Date.now();
    const run = backend({ waitSeconds: 0 }).generate({ jobId: 'j6b', request: request() }, ctx(ac.signal));
    setTimeout(() => ac.abort(), 400);
    const err = await failure(run);
    expect(err.kind).toBe('cancelled');
    expect(err.billed?.seconds).toBeGreaterThan(0);
    expect(err.billed!.seconds).toBeLessThanOrEqual((Date.now() - started) / 1000);
  });

  it("names each prediction to onRemoteRun before polling it, so a dead worker's run can be found", async () => {
    fake.options.mode = 'hang';
    const named: string[] = [];
    const ac = new AbortController();
    const run = backend({ waitSeconds: 0 }).generate(
      { jobId: 'j6r', request: request() },
      {
        ...ctx(ac.signal),
        onRemoteRun: async (ref) => {
          named.push(ref);
          // Not polled yet: the record is written first.
          expect(fake.requests.filter((r) => r.method === 'GET' && r.path.startsWith('/v1/predictions/'))).toEqual([]);
        },
      },
    );
    setTimeout(() => ac.abort(), 200);
    await failure(run);
    expect(named).toEqual([fake.predictions[0]!.id]);
  });

  it("reclaims a dead worker's prediction: a running one is cancelled and billed its run time, an ended one billed as it ended, an unknown one is a 404", async () => {
    const b = backend({ waitSeconds: 0 });
    fake.options.mode = 'hang';
    const ac = new AbortController();
    const run = b.generate({ jobId: 'j6o', request: request() }, { ...ctx(ac.signal), onRemoteRun: async () => ac.abort() });
    await failure(run);
    // The aborted generate cancelled its own prediction; a fresh one is left running as a dead worker leaves it.
    const orphan = await fetch(`${fake.url}/predictions`, {
      method: 'POST',
      headers: { authorization: 'Bearer r8_fake', 'content-type': 'application/json' },
      body: JSON.stringify({ version: DEFAULT_SDXL_VERSION, input: { prompt: 'x' } }),
    }).then((r) => r.json() as Promise<{ id: string }>);
    await new Promise((r) => setTimeout(r, 150));
    const running = await b.reclaim!(orphan.id, {});
    expect(running.cancelled).toBe(true);
    expect(fake.cancels).toContain(orphan.id);
    expect(running.billed.seconds).toBeGreaterThan(0);
    expect(running.billed.images).toBe(0);
    // Asked again (a try that died after reclaiming): already cancelled, not cancelled twice, the same bill.
    const again = await b.reclaim!(orphan.id, {});
    expect(again).toEqual({ ...running, cancelled: false, status: 'canceled' });
    expect(fake.cancels.filter((id) => id === orphan.id)).toHaveLength(1);

    fake.options.mode = 'ok';
    const done = await b.generate({ jobId: 'j6p', request: request({ count: 1 }) }, ctx());
    expect(done.billedSeconds).toBe(3.25);
    const ended = await b.reclaim!(fake.predictions.at(-1)!.id, {});
    expect(ended).toMatchObject({ cancelled: false, status: 'succeeded', billed: { seconds: 3.25 } });

    const unknown = await failure(b.reclaim!('nosuchprediction', {}));
    expect(unknown.status).toBe(404);
  });

  it('a failed prediction is billed its predict_time', async () => {
    fake.options.failWith = 'CUDA out of memory';
    const err = await failure(backend().generate({ jobId: 'j6c', request: request() }, ctx()));
    expect(err.kind).toBe('bad-response');
    expect(err.billed).toEqual({ seconds: 3.25, images: 0 });
  });

  it('a run the budget caps is polled often enough to finish within its cap, however slow PROGRESS_POLL_MS is', async () => {
    // Polled every 5 s, a 2 s cap met one poll early would cancel the run the moment it was created.
    const out = await backend({ waitSeconds: 0, pollIntervalMs: 5000 }).generate(
      { jobId: 'j6e', request: request() },
      { ...ctx(), maxBilledSeconds: 2 },
    );
    expect(out.images.length).toBeGreaterThan(0);
    expect(fake.cancels).toEqual([]);
  });

  it('a prediction that would run past what the budget set aside is cancelled there, and billed no more than that', async () => {
    fake.options.mode = 'hang';
    const started = Date.now();
    const err = await failure(
      backend({ waitSeconds: 60 }).generate({ jobId: 'j6d', request: request() }, { ...ctx(), maxBilledSeconds: 0.6 }),
    );
    expect(err.kind).toBe('timeout');
    expect(err.retryable).toBe(false);
    expect(fake.cancels).toEqual([fake.predictions[0]!.id]);
    // Not held for the 60 s sync wait: cut at the cap, give or take one poll.
    expect(Date.now() - started).toBeLessThan(2000);
    expect(err.billed!.seconds).toBeLessThanOrEqual(0.6);
  });

  it('an abort during the held create waits for the prediction it names, cancels it and carries the run time Replicate bills', async () => {
    fake.options.mode = 'hang';
    const ac = new AbortController();
    const run = backend({ waitSeconds: 1 }).generate({ jobId: 'j7', request: request() }, ctx(ac.signal));
    setTimeout(() => ac.abort(), 150);
    const err = await failure(run);

    expect(err.kind).toBe('cancelled');
    expect(fake.cancels).toEqual([fake.predictions[0]!.id]);
    // Before, the abort answered at once and the run, cancelled later, was booked at nothing.
    expect(err.billed?.seconds ?? 0).toBeGreaterThan(0);
  });

  it('maps 401 to a non-retryable rejection naming the token variable', async () => {
    const err = await failure(backend({ token: 'r8_wrong' }).generate({ jobId: 'j8', request: request() }, ctx()));
    expect([err.kind, err.retryable, err.status]).toEqual(['rejected', false, 401]);
    expect(err.message).toContain('REPLICATE_API_TOKEN');
    expect(fake.predictions).toHaveLength(0);
  });

  // The client retries a 429 five times back-to-back; our fetch short-circuits those retries, so one request reaches the fake.
  it('maps 429 to busy with Retry-After, after a single request', async () => {
    fake.rateLimitNext(10, 7);
    const err = await failure(backend().generate({ jobId: 'j9', request: request() }, ctx()));
    expect([err.kind, err.retryable, err.retryAfterS, err.status]).toEqual(['busy', true, 7, 429]);
    expect(creates()).toHaveLength(1);
  });

  it.each([
    [402, 'rejected', false],
    [422, 'rejected', false],
    [500, 'unavailable', true],
  ] as const)('maps a %i on create to %s (retryable %s)', async (status, kind, retryable) => {
    fake.failNextCreate(status);
    const err = await failure(backend().generate({ jobId: 'j10', request: request() }, ctx()));
    expect([err.kind, err.retryable, err.status]).toEqual([kind, retryable, status]);
    if (status === 402) expect(err.message).toContain('credit');
  });

  it('maps an NSFW failure to unsafe and another failure to a retryable bad-response', async () => {
    fake.options.failWith = 'NSFW content detected. Try running it again, or try a different prompt.';
    const unsafe = await failure(backend().generate({ jobId: 'j11', request: request() }, ctx()));
    expect(unsafe.kind).toBe('unsafe');

    fake.options.failWith = 'CUDA out of memory';
    fake.options.durationMs = 600;
    const failed = await failure(backend({ waitSeconds: 0 }).generate({ jobId: 'j12', request: request() }, ctx()));
    expect([failed.kind, failed.retryable]).toEqual(['bad-response', true]);
    expect(failed.message).toContain('CUDA out of memory');
  });

  it.each(['garbage', 'wrong-size'] as const)('maps %s sdxl output to bad-response', async (mode) => {
    fake.options.mode = mode;
    const err = await failure(backend().generate({ jobId: 'j13', request: request() }, ctx()));
    expect(err.kind).toBe('bad-response');
  });

  describe('output as hostile input', () => {
    /** A server on another origin that records every request it gets. */
    async function foreignOrigin(): Promise<{ url: string; hits: string[]; close: () => Promise<void> }> {
      const hits: string[] = [];
      const server = createServer((req, res) => {
        hits.push(req.url ?? '');
        res.writeHead(200, { 'content-type': 'image/png' });
        res.end(PNG_1PX);
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      return { url, hits, close: () => new Promise((r) => server.close(() => r())) };
    }

    it('an output URL on a foreign origin, or a redirect to one, is refused without contacting it', async () => {
      const foreign = await foreignOrigin();
      try {
        fake.options.output = { url: (file) => `${foreign.url}${file}` };
        const direct = await failure(backend().generate({ jobId: 'h1', request: request() }, ctx()));
        expect([direct.kind, direct.retryable]).toEqual(['bad-response', false]);
        expect(direct.message).toContain('output refused');
        fake.options.output = { redirectTo: `${foreign.url}/elsewhere.png` };
        const redirected = await failure(backend().generate({ jobId: 'h2', request: request() }, ctx()));
        expect(redirected.message).toMatch(/output refused: .*redirects to another site/);
        expect(foreign.hits).toEqual([]);
      } finally {
        await foreign.close();
      }
    });

    it('an output over the byte cap is refused before it is all read', async () => {
      fake.options.output = { body: Buffer.concat([PNG_1PX, Buffer.alloc(256 * 1024)]) };
      const err = await failure(backend({ outputMaxBytes: 64 * 1024 }).generate({ jobId: 'h3', request: request() }, ctx()));
      expect(err.kind).toBe('bad-response');
      expect(err.message).toMatch(/output refused: .*limit/);
    });

    it('a decompression bomb (a tiny PNG declaring 20000×20000) and a GIF are refused before anything decodes them', async () => {
      fake.options.output = { body: bombPng() };
      const bomb = await failure(backend().generate({ jobId: 'h4', request: request() }, ctx()));
      expect(bomb.message).toMatch(/output refused: .*20000×20000/);
      fake.options.output = { body: GIF_1PX };
      const gif = await failure(backend().generate({ jobId: 'h5', request: request() }, ctx()));
      expect(gif.message).toMatch(/output refused: .*GIF/);
    });
  });

  it('maps an unreachable API to a retryable unavailable', async () => {
    const err = await failure(backend({ baseUrl: 'http://127.0.0.1:9/v1' }).generate({ jobId: 'j14', request: request() }, ctx()));
    expect([err.kind, err.retryable]).toEqual(['unavailable', true]);
  });

  it('health checks GET /v1/account with the token', async () => {
    expect((await backend().health()).ok).toBe(true);
    expect(fake.requests.at(-1)?.path).toBe('/v1/account');
    const bad = await backend({ token: 'r8_wrong' }).health();
    expect(bad.ok).toBe(false);
    expect(bad.detail).toContain('REPLICATE_API_TOKEN');
  });
});

describe('Replicate and presets', () => {
  const version = 'a'.repeat(64);
  const catalog = buildCatalog({
    fast: { replicate: { usdPerImage: 0.002 } },
    myxl: { label: 'My XL', replicate: { model: 'someone/my-sdxl', version, steps: 22, guidance: 5, sampler: 'DPMSolverMultistep' } },
  });

  it('runs a preset’s community model by its version with the preset’s steps, guidance and scheduler, and names it in the lineage', async () => {
    const b = backend({ presets: catalog });
    const r = request({ preset: 'myxl', count: 1 });
    const s = b.settingsFor(r);
    expect(s).not.toHaveProperty('refused');
    const out = await b.generate({ jobId: 'p1', request: r, settings: s as Exclude<typeof s, { refused: string }> }, ctx());
    const [create] = creates();
    expect(create?.path).toBe('/v1/predictions');
    expect(create?.body.version).toBe(version);
    expect(create?.body.input).toMatchObject({ num_inference_steps: 22, guidance_scale: 5, scheduler: 'DPMSolverMultistep' });
    expect(out.model).toEqual({ name: 'stability-ai/sdxl', version });
    expect(out.usdPerImage).toBeUndefined();
  });

  it('an official model is billed per image at the preset’s price; a preset without a Replicate entry is not run there', async () => {
    const b = backend({ presets: catalog, officialUsdPerImage: 0.003 });
    const r = request({ preset: 'fast', count: 1 });
    const s = b.settingsFor(r) as Exclude<ReturnType<typeof b.settingsFor>, { refused: string }>;
    const out = await b.generate({ jobId: 'p2', request: r, settings: s }, ctx());
    expect(creates()[0]?.path).toBe('/v1/models/black-forest-labs/flux-schnell/predictions');
    expect(out).toMatchObject({ usdPerImage: 0.002, model: { name: 'black-forest-labs/flux-schnell' } });
    expect(b.usdPerImage?.(s)).toBe(0.002);
    expect(b.settingsFor(request({ preset: 'turbo' }))).toEqual({ refused: 'preset "turbo" does not run on replicate' });
  });

  it('reports the steps FLUX schnell ran (capped at 4 whatever the member asked) and no guidance, which it does not take', async () => {
    const b = backend({ presets: catalog });
    const r = request({ preset: 'fast', count: 1, steps: 30, memberSteps: 30 });
    const s = b.settingsFor(r) as Exclude<ReturnType<typeof b.settingsFor>, { refused: string }>;
    const out = await b.generate({ jobId: 'p3', request: r, settings: s }, ctx());
    expect(creates()[0]?.body.input).toMatchObject({ num_inference_steps: 4 });
    expect(out).toMatchObject({ steps: 4, guidance: null });
  });
});
