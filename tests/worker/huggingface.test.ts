import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BackendError } from '../../core/errors.js';
import type { GenerationRequest } from '../../core/generation.js';
import { createLogger } from '../../core/io/logger.js';
import type { RunContext } from '../../worker/backends/backend.js';
import { createHuggingFaceBackend, type HuggingFaceBackendOptions } from '../../worker/backends/huggingface.js';
import { type FakeHFEndpoint, startFakeHFEndpoint } from '../fakes/huggingface.js';
import { bombPng } from '../fixtures/png.js';

const log = createLogger({ level: 'silent' });
let fake: FakeHFEndpoint;

beforeEach(async () => {
  fake = await startFakeHFEndpoint({ token: 'hf_test' });
});
afterEach(async () => {
  await fake.close();
});

function request(over: Partial<GenerationRequest> = {}): GenerationRequest {
  return {
    kind: 'txt2img',
    prompt: 'a fox in the snow',
    negative: 'lowres',
    width: 512,
    height: 384,
    count: 2,
    seed: 42,
    steps: 30,
    guidance: 6.5,
    preset: 'default',
    replicateModel: 'sdxl',
    ...over,
  };
}

function backend(over: Partial<HuggingFaceBackendOptions> = {}) {
  return createHuggingFaceBackend({ id: 'huggingface', token: 'hf_test', endpointUrl: fake.url, requestTimeoutMs: 5000, log, ...over });
}

function ctx(signal = new AbortController().signal): RunContext {
  return { signal, onProgress: () => undefined };
}

async function failure(p: Promise<unknown>): Promise<BackendError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BackendError);
  return err as BackendError;
}

describe('Hugging Face backend against a fake Inference Endpoint', () => {
  it('makes one request per image with seed + i and returns PNGs of the requested size', async () => {
    const out = await backend().generate({ jobId: 'j1', request: request() }, ctx());

    expect(out.images).toHaveLength(2);
    for (const img of out.images) {
      const meta = await sharp(img).metadata();
      expect([meta.format, meta.width, meta.height]).toEqual(['png', 512, 384]);
    }
    expect(fake.requests.map((r) => [r.method, r.path, r.headers.authorization])).toEqual([
      ['POST', '/', 'Bearer hf_test'],
      ['POST', '/', 'Bearer hf_test'],
    ]);
    expect(fake.requests.map((r) => r.body)).toEqual(
      [42, 43].map((seed) => ({
        inputs: 'a fox in the snow',
        parameters: { negative_prompt: 'lowres', width: 512, height: 384, num_inference_steps: 30, guidance_scale: 6.5, seed },
      })),
    );
    expect(out.billedImages).toBe(2);
    expect(out.billedSeconds).toBeGreaterThan(0);
    expect(out.seed).toBe(42);
  });

  it('treats a cold endpoint (503 loading) as busy with the estimated wait, without a retry loop', async () => {
    fake.options.loadingFor = 5;
    const err = await failure(backend().generate({ jobId: 'j2', request: request() }, ctx()));
    expect([err.kind, err.retryable, err.retryAfterS, err.status]).toEqual(['busy', true, 20, 503]);
    expect(fake.requests).toHaveLength(1);
  });

  it.each([
    ['401', 'rejected', false, 401],
    ['error500', 'unavailable', true, 500],
    ['429', 'busy', true, 429],
  ] as const)('maps mode %s to %s (retryable %s)', async (mode, kind, retryable, status) => {
    fake.options.mode = mode;
    const err = await failure(backend().generate({ jobId: 'j3', request: request() }, ctx()));
    expect([err.kind, err.retryable, err.status]).toEqual([kind, retryable, status]);
    if (mode === '429') expect(err.retryAfterS).toBe(7);
    if (mode === '401') expect(err.message).toContain('HF_TOKEN');
  });

  it('maps a hung endpoint to a timeout after requestTimeoutMs', async () => {
    fake.options.mode = 'hang';
    const started = Date.now();
    const err = await failure(backend({ requestTimeoutMs: 500 }).generate({ jobId: 'j4', request: request() }, ctx()));
    expect([err.kind, err.retryable]).toEqual(['timeout', true]);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('maps an abort to cancelled', async () => {
    fake.options.mode = 'hang';
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 150);
    const err = await failure(backend().generate({ jobId: 'j5', request: request() }, ctx(ac.signal)));
    expect(err.kind).toBe('cancelled');
  });

  it.each(['garbage', 'wrong-size'] as const)('maps %s answers to bad-response', async (mode) => {
    fake.options.mode = mode;
    const err = await failure(backend().generate({ jobId: 'j6', request: request() }, ctx()));
    expect(err.kind).toBe('bad-response');
  });

  it.each([
    ['a decompression bomb (a tiny PNG declaring 20000×20000)', { body: bombPng() }, /declares 20000×20000, over the 16 MP cap/],
    ['over the byte cap by its Content-Length', { body: bombPng(), contentLength: 100 * 1024 * 1024 }, /answer refused: .*limit is 64 MB/],
    ['a GIF', { body: Buffer.from('R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7', 'base64') }, /not a PNG, JPEG or WebP/],
    [
      'application/octet-stream over the byte cap by its Content-Length',
      { body: bombPng(), contentLength: 100 * 1024 * 1024, contentType: 'application/octet-stream' },
      /answer refused: .*limit is 64 MB/,
    ],
  ] as const)('an answer that is %s is refused before anything decodes it', async (_what, output, message) => {
    fake.options.output = output;
    const err = await failure(backend().generate({ jobId: 'j6b', request: request() }, ctx()));
    expect(err.kind).toBe('bad-response');
    expect(err.message).toMatch(message);
  });

  it('an image answered as application/octet-stream is read like any other, by its bytes', async () => {
    const png = await sharp({ create: { width: 512, height: 384, channels: 3, background: '#48c' } })
      .png()
      .toBuffer();
    fake.options.output = { body: png, contentType: 'application/octet-stream' };
    const out = await backend().generate({ jobId: 'j6c', request: request({ count: 1 }) }, ctx());
    expect(await sharp(out.images[0]!).metadata()).toMatchObject({ format: 'png', width: 512, height: 384 });
  });

  describe('an image the answer names by URL, as hostile input', () => {
    /** A server on another origin that records every request it gets and answers `body` as a PNG. */
    async function foreignOrigin(body: Buffer): Promise<{ url: string; hits: string[]; close: () => Promise<void> }> {
      const hits: string[] = [];
      const server = createServer((req, res) => {
        hits.push(req.url ?? '');
        res.writeHead(200, { 'content-type': 'image/png', 'content-length': body.length });
        res.end(body);
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      return { url, hits, close: () => new Promise((r) => server.close(() => r())) };
    }
    const png = () =>
      sharp({ create: { width: 512, height: 384, channels: 3, background: '#c84' } })
        .png()
        .toBuffer();

    it('an image on a foreign origin (an internal address), or a redirect there, is refused without contacting it', async () => {
      const foreign = await foreignOrigin(await png());
      try {
        fake.options.answerUrl = `${foreign.url}/latest/meta-data/iam`;
        const named = await failure(backend().generate({ jobId: 'u1', request: request({ count: 1 }) }, ctx()));
        expect([named.kind, named.retryable]).toEqual(['bad-response', false]);
        expect(named.message).toMatch(/output refused/);
        fake.options.answerUrl = undefined;
        fake.options.redirectTo = `${foreign.url}/elsewhere.png`;
        const redirected = await failure(backend().generate({ jobId: 'u2', request: request({ count: 1 }) }, ctx()));
        expect([redirected.kind, redirected.retryable]).toEqual(['bad-response', false]);
        expect(foreign.hits).toEqual([]);
      } finally {
        await foreign.close();
      }
    });

    it('an image on an allowed output origin is fetched, and refused over the byte or pixel cap', async () => {
      const good = await foreignOrigin(await png());
      const bomb = await foreignOrigin(bombPng());
      try {
        fake.options.answerUrl = `${good.url}/out.png`;
        const out = await backend({ outputOrigins: [good.url] }).generate({ jobId: 'u3', request: request({ count: 1 }) }, ctx());
        expect(await sharp(out.images[0]!).metadata()).toMatchObject({ format: 'png', width: 512, height: 384 });
        expect(good.hits).toEqual(['/out.png']);

        const tooBig = await failure(
          backend({ outputOrigins: [good.url], outputMaxBytes: 1024 }).generate({ jobId: 'u4', request: request({ count: 1 }) }, ctx()),
        );
        expect([tooBig.kind, tooBig.message]).toEqual(['bad-response', expect.stringMatching(/output refused: .*limit/)]);

        fake.options.answerUrl = `${bomb.url}/bomb.png`;
        const decompression = await failure(
          backend({ outputOrigins: [bomb.url] }).generate({ jobId: 'u5', request: request({ count: 1 }) }, ctx()),
        );
        expect([decompression.kind, decompression.message]).toEqual([
          'bad-response',
          expect.stringMatching(/output refused: .*20000×20000/),
        ]);
      } finally {
        await good.close();
        await bomb.close();
      }
    });
  });

  it('a failure partway through a job carries the images served as billed; a retry of the job requests only the missing ones', async () => {
    fake.options.modeByPost = { 2: 'error500' };
    const b = backend();
    const job = { jobId: 'j-part', request: request({ count: 3 }) };
    const err = await failure(b.generate(job, ctx()));
    expect([err.kind, err.retryable, err.billed?.images]).toEqual(['unavailable', true, 1]);
    expect(err.billed?.seconds).toBeGreaterThan(0);
    // The chain's retry hands the same job back: image 1 is kept, images 2 and 3 are asked for.
    const out = await b.generate(job, ctx());
    expect(fake.requests.map((r) => r.body.parameters.seed)).toEqual([42, 43, 43, 44]);
    expect(out.images).toHaveLength(3);
    // Served once each, booked once: on the outcome the chain books (it keeps the first try's).
    expect(out.billedImages).toBe(3);
    // Another attempt (a new job object) starts afresh.
    await b.generate({ ...job }, ctx());
    expect(fake.requests).toHaveLength(7);
  });

  it('a cancel partway through a job carries the images served as billed', async () => {
    fake.options.modeByPost = { 2: 'hang' };
    const ac = new AbortController();
    const watch = setInterval(() => fake.requests.length === 2 && ac.abort(), 10);
    const err = await failure(backend().generate({ jobId: 'j-cancel', request: request() }, ctx(ac.signal))).finally(() =>
      clearInterval(watch),
    );
    expect([err.kind, err.billed?.images]).toEqual(['cancelled', 1]);
  });

  it('maps an unreachable endpoint to a retryable unavailable', async () => {
    const err = await failure(backend({ endpointUrl: 'http://127.0.0.1:9/' }).generate({ jobId: 'j7', request: request() }, ctx()));
    expect([err.kind, err.retryable]).toEqual(['unavailable', true]);
  });

  it('offers inpaint only when configured, sending image-to-image with a base64 mask_image', async () => {
    expect(backend().capabilities.kinds).toEqual(['txt2img']);
    const b = backend({ inpaint: true });
    expect(b.capabilities.kinds).toEqual(['txt2img', 'inpaint', 'img2img', 'upscale']);

    const image = await sharp({ create: { width: 512, height: 384, channels: 3, background: '#224466' } })
      .png()
      .toBuffer();
    const mask = await sharp({ create: { width: 512, height: 384, channels: 3, background: '#ffffff' } })
      .png()
      .toBuffer();
    const out = await b.generate({ jobId: 'j8', request: request({ kind: 'inpaint', count: 1, strength: 0.55 }), image, mask }, ctx());

    expect(out.images).toHaveLength(1);
    const body = fake.requests[0]?.body;
    expect(body.inputs).toBe(image.toString('base64'));
    expect(body.parameters).toMatchObject({ prompt: 'a fox in the snow', mask_image: mask.toString('base64'), strength: 0.55, seed: 42 });
  });

  it('img2img and upscale send image-to-image with the image and strength, and no mask_image', async () => {
    const b = backend({ inpaint: true });
    const image = await sharp({ create: { width: 512, height: 384, channels: 3, background: '#446622' } })
      .png()
      .toBuffer();
    const out = await b.generate({ jobId: 'j9', request: request({ kind: 'img2img', count: 1, strength: 0.6 }), image }, ctx());
    expect(out.images).toHaveLength(1);
    const body = fake.requests[0]?.body;
    expect(body.inputs).toBe(image.toString('base64'));
    expect(body.parameters).toEqual({
      prompt: 'a fox in the snow',
      negative_prompt: 'lowres',
      width: 512,
      height: 384,
      num_inference_steps: 30,
      guidance_scale: 6.5,
      seed: 42,
      strength: 0.6,
    });

    const source = await sharp({ create: { width: 256, height: 192, channels: 3, background: '#446622' } })
      .png()
      .toBuffer();
    const up = await b.generate(
      {
        jobId: 'j10',
        request: request({ kind: 'upscale', count: 1, strength: 0.3 }),
        image,
        source: { image: source, width: 256, height: 192 },
      },
      ctx(),
    );
    expect(await sharp(up.images[0]!).metadata()).toMatchObject({ format: 'png', width: 512, height: 384 });
    expect(fake.requests[1]?.body.inputs).toBe(image.toString('base64'));
    expect(fake.requests[1]?.body.parameters).toMatchObject({ strength: 0.3, width: 512, height: 384 });
    expect(fake.requests[1]?.body.parameters).not.toHaveProperty('mask_image');

    const err = await failure(b.generate({ jobId: 'j11', request: request({ kind: 'img2img', count: 1 }) }, ctx()));
    expect([err.kind, err.retryable]).toEqual(['rejected', false]);
    expect(fake.requests).toHaveLength(2);
  });

  it('health: reachable endpoint is ok; one loading or scaled to zero is not', async () => {
    const ok = await backend().health();
    expect(ok.ok).toBe(true);
    expect(fake.requests.at(-1)?.method).toBe('GET');

    fake.options.loadingFor = 1;
    const cold = await backend().health();
    expect(cold.ok).toBe(false);
    expect(cold.detail).toContain('scaled to zero');
  });
});

describe('Hugging Face and presets', () => {
  it('turbo routes to SDXL Turbo with its steps and no CFG; a dedicated endpoint serving another model does not run it', async () => {
    const routed = backend({ endpointUrl: undefined, model: undefined });
    const s = routed.settingsFor(request({ preset: 'turbo' }));
    expect(s).toMatchObject({ steps: 4, guidance: 0, preset: { model: 'stabilityai/sdxl-turbo' } });
    const endpoint = backend({ model: 'stabilityai/stable-diffusion-xl-base-1.0' });
    expect(endpoint.settingsFor(request({ preset: 'turbo' }))).toHaveProperty('refused');
    const out = await endpoint.generate({ jobId: 'pt', request: request({ preset: 'sdxl', count: 1 }) }, ctx());
    expect(out.model?.name).toMatch(/^stabilityai\/stable-diffusion-xl-base-1\.0 \(endpoint 127\.0\.0\.1:\d+\)$/);
  });

  it('reports the steps and guidance turbo ran (no CFG), not the preset-wide guidance the request carries', async () => {
    const s = backend({ endpointUrl: undefined, model: undefined }).settingsFor(request({ preset: 'turbo' }));
    expect(s).not.toHaveProperty('refused');
    const r = request({ preset: 'turbo', count: 1, steps: 4, guidance: 1 });
    const out = await backend().generate({ jobId: 'tg', request: r, settings: s as Exclude<typeof s, { refused: string }> }, ctx());
    expect(fake.requests[0]?.body).toMatchObject({ parameters: { num_inference_steps: 4, guidance_scale: 0 } });
    expect(out).toMatchObject({ steps: 4, guidance: 0 });
  });
});
