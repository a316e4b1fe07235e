import { type Job, UnrecoverableError } from 'bullmq';
import { Redis } from 'ioredis';
import sharp from 'sharp';
import { afterAll, afterEach } from 'vitest';
import { type GenerationRequest, type JobPayload, type JobResult, parseImagineOptions } from '../../core/generation.js';
import { imageTasks } from '../../core/io/image-tasks.js';
import { createLogger } from '../../core/io/logger.js';
import { ResultStore } from '../../core/io/results.js';
import { inlineTasks } from '../../core/io/thread-pool.js';
import { createA1111Backend } from '../../worker/backends/a1111.js';
import type { ImageBackend } from '../../worker/backends/backend.js';
import { BackendChain } from '../../worker/backends/chain.js';
import { createComfyUIBackend } from '../../worker/backends/comfyui.js';
import { createReplicateBackend, DEFAULT_SDXL_VERSION } from '../../worker/backends/replicate.js';
import { createProcessor } from '../../worker/processor.js';
import { startFakeA1111 } from '../fakes/a1111.js';
import { startFakeComfyUI } from '../fakes/comfyui.js';
import { startFakeReplicate } from '../fakes/replicate.js';
import { bombPng } from '../fixtures/png.js';
import { describe, expect, test } from '../setup/fixtures.js';

const log = createLogger({ level: 'silent' });
const redis = new Redis(process.env.TEST_REDIS_URL || 'redis://127.0.0.1:6379');
afterAll(() => redis.quit());
let closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(closers.map((c) => c()));
  closers = [];
});

function fakeJob(payload: JobPayload): Job<JobPayload, JobResult> {
  return {
    id: payload.jobId,
    data: payload,
    attemptsMade: 0,
    opts: { attempts: 3 },
    updateProgress: async () => undefined,
  } as unknown as Job<JobPayload, JobResult>;
}

async function comfy() {
  const fake = await startFakeComfyUI({ stepDelayMs: 2 });
  closers.push(() => fake.close());
  return {
    fake,
    backend: createComfyUIBackend({ id: 'comfyui', url: fake.url, checkpoint: 'sd_xl_base_1.0.safetensors', progressTimeoutMs: 2000, log }),
  };
}

async function a1111() {
  const fake = await startFakeA1111({ stepDelayMs: 2 });
  closers.push(() => fake.close());
  return { fake, backend: createA1111Backend({ id: 'a1111', url: fake.url, pollIntervalMs: 20, progressTimeoutMs: 2000, log }) };
}

/** A processor over one backend; `source` (if given) is parked under the job's image input key as the bot would. */
async function setup(prefix: string, backend: ImageBackend, kind: 'img2img' | 'upscale', size: [number, number], source?: Buffer) {
  const results = new ResultStore(redis, prefix, 60);
  const process = createProcessor({ chain: new BackendChain({ backends: [backend], log, price: () => 0 }), results, log });
  const jobId = crypto.randomUUID();
  const key = results.inputKey(jobId, 'image');
  if (source) await results.put(key, source);
  const request: GenerationRequest = {
    ...parseImagineOptions({ prompt: 'a harbour at night', steps: 3 }),
    kind,
    width: size[0],
    height: size[1],
    count: 1,
    strength: kind === 'upscale' ? 0.3 : 0.6,
    inputKeys: { image: key },
    source: { jobId: 'earlier-job', index: 0 },
  };
  const run = () => process(fakeJob({ v: 1, jobId, guildId: 'g', request, paidAllowed: true, nsfwAllowed: true }));
  return { results, jobId, key, run };
}

const picture = (width: number, height: number) =>
  sharp({ create: { width, height, channels: 3, background: { r: 20, g: 90, b: 160 } } })
    .webp()
    .toBuffer();

describe('processor: img2img and upscale inputs', () => {
  test('an upscale on a chain without an upscaler is an img2img pass from the source resized to exactly the target size', async ({
    redisPrefix,
  }) => {
    const { fake, backend } = await comfy();
    // 63×47 WebP to 128×96: not an exact 2×, so only a resize to the target gives the pass its size.
    const s = await setup(redisPrefix, backend, 'upscale', [128, 96], await picture(63, 47));
    const result = await s.run();

    expect(result).toMatchObject({ backend: 'comfyui', width: 128, height: 96, imageKeys: [s.results.imageKey(s.jobId, 0)] });
    const stored = await s.results.get(result.imageKeys[0]!);
    expect(await sharp(stored!).metadata()).toMatchObject({ format: 'png', width: 128, height: 96 });
    // ComfyUI was given the resized PNG and ran the img2img graph at the upscale's strength.
    expect(fake.uploads).toHaveLength(1);
    expect(await sharp(fake.uploads[0]!.data).metadata()).toMatchObject({ format: 'png', width: 128, height: 96 });
    expect(fake.prompts[0]!.graph['3']!.inputs).toMatchObject({ denoise: 0.3, latent_image: ['12', 0] });
    // Inputs are dropped once the job no longer needs them.
    expect(await redis.exists(s.key)).toBe(0);
  });

  test('an upscale on A1111 hands the untouched source to its upscaler and returns the target size', async ({ redisPrefix }) => {
    const { fake, backend } = await a1111();
    const source = await picture(64, 48);
    const s = await setup(redisPrefix, backend, 'upscale', [128, 96], source);
    const result = await s.run();

    expect(result).toMatchObject({ backend: 'a1111', width: 128, height: 96 });
    expect(await sharp((await s.results.get(result.imageKeys[0]!))!).metadata()).toMatchObject({ format: 'png', width: 128, height: 96 });
    const extras = fake.requests.filter((r) => r.path === '/sdapi/v1/extra-single-image');
    expect(extras.map((r) => r.json)).toEqual([
      { image: source.toString('base64'), resize_mode: 0, upscaling_resize: 2, upscaler_1: 'R-ESRGAN 4x+' },
    ]);
    expect(fake.jobs).toEqual([]);
  });

  test('an img2img job whose source expired fails clearly and for good, without reaching a backend', async ({ redisPrefix }) => {
    const { fake, backend } = await comfy();
    const s = await setup(redisPrefix, backend, 'img2img', [64, 48]);
    const err = await s.run().catch((e: unknown) => e);

    expect(err).toBeInstanceOf(UnrecoverableError);
    const failure = await s.results.getFailure(s.jobId);
    expect(failure).toEqual({ code: 'rejected', message: 'the source image expired before the job ran. Please try again.', attempts: [] });
    expect(fake.requests).toEqual([]);
  });

  test('a source that claims more pixels than allowed is refused before decoding; bytes that are no image are refused too', async ({
    redisPrefix,
  }) => {
    const { fake, backend } = await comfy();
    const bomb = await setup(redisPrefix, backend, 'img2img', [64, 48], bombPng(20_000));
    await expect(bomb.run()).rejects.toBeInstanceOf(UnrecoverableError);
    expect((await bomb.results.getFailure(bomb.jobId))?.message).toBe('the source image is larger than 16 megapixels.');

    const junk = await setup(redisPrefix, backend, 'upscale', [64, 48], Buffer.from('<html>not an image</html>'));
    await expect(junk.run()).rejects.toBeInstanceOf(UnrecoverableError);
    expect(await junk.results.getFailure(junk.jobId)).toMatchObject({ code: 'rejected', message: 'the source image could not be read.' });
    expect(fake.requests).toEqual([]);
  });
});

describe('results of several images', () => {
  test('the worker stores a numbered grid beside the images, and one image gets none', async ({ redisPrefix }) => {
    const { backend } = await a1111();
    const results = new ResultStore(redis, redisPrefix, 60);
    const process = createProcessor({ chain: new BackendChain({ backends: [backend], log, price: () => 0 }), results, log });
    const run = (count: number) => {
      const request = { ...parseImagineOptions({ prompt: 'three boats', steps: 2, count }), width: 512, height: 512 };
      return process(fakeJob({ v: 1, jobId: crypto.randomUUID(), guildId: 'g', request, paidAllowed: true, nsfwAllowed: true }));
    };
    const several = await run(3);
    expect(several.gridKey).toBeDefined();
    const grid = await sharp((await results.get(several.gridKey!))!).metadata();
    // 2 × 2 layout of 512 px tiles with an 8 px gap (the fourth cell empty).
    expect([grid.format, grid.width, grid.height]).toEqual(['webp', 1032, 1032]);
    expect((await run(1)).gridKey).toBeUndefined();
  });
});

describe('processor: a paid result is paid for once', () => {
  test('the grid fails after a paid success: the failure record carries the billed attempt, and the next try resumes from the kept images without a second prediction', async ({
    redisPrefix,
  }) => {
    const fake = await startFakeReplicate({ durationMs: 50, predictTimeS: 4 });
    closers.push(() => fake.close());
    const backend = createReplicateBackend({
      id: 'replicate',
      token: 'r8_fake',
      baseUrl: fake.url,
      outputOrigins: [new URL(fake.url).origin],
      sdxlVersion: DEFAULT_SDXL_VERSION,
      pollIntervalMs: 20,
      log,
    });
    const results = new ResultStore(redis, redisPrefix, 60);
    const chain = new BackendChain({ backends: [backend], log, price: (_b, _r, seconds) => seconds * 0.0025 });
    let gridFails = true;
    // The pool a worker hands its image work to, failing the grid the first time as a full machine would.
    const inline = inlineTasks(imageTasks);
    const cpu: typeof inline = {
      run: (task, ...args) =>
        task === 'makeGrid' && gridFails ? Promise.reject(new Error('grid: out of memory')) : inline.run(task, ...args),
    };
    const process = createProcessor({ chain, results, log, cpu });
    const jobId = crypto.randomUUID();
    const request: GenerationRequest = {
      ...parseImagineOptions({ prompt: 'two lighthouses', count: 2, steps: 3 }),
      width: 512,
      height: 512,
    };
    const payload: JobPayload = { v: 1, jobId, guildId: 'g', request, paidAllowed: true, nsfwAllowed: true };

    await expect(process(fakeJob(payload))).rejects.toThrow(/out of memory/);
    expect(fake.predictions).toHaveLength(1);
    const failure = await results.getFailure(jobId);
    expect(failure?.attempts).toEqual([expect.objectContaining({ backend: 'replicate', outcome: 'succeeded', costUsd: 0.01 })]);

    gridFails = false;
    const result = await process({ ...fakeJob(payload), attemptsMade: 1 } as Job<JobPayload, JobResult>);
    expect(fake.predictions).toHaveLength(1);
    expect(result.attempts).toEqual([expect.objectContaining({ backend: 'replicate', outcome: 'succeeded', costUsd: 0.01 })]);
    expect(result.costUsd).toBeCloseTo(0.01, 6);
    expect((await results.getMany(result.imageKeys)).every((b) => b !== null)).toBe(true);
  });
});

describe('processor: a cancel after the backend returned', () => {
  /** A job on the fake box whose output is screened; `during` runs while the image is checked or stored. */
  async function screened(
    prefix: string,
    during: { check?: (abort: () => void) => void; store?: (abort: () => void) => void },
    shutdown?: AbortSignal,
  ) {
    const { backend } = await a1111();
    const running = new Map<string, AbortController>();
    const jobId = crypto.randomUUID();
    // What worker/main.ts does when a member's cancel is published.
    const abort = () => running.get(jobId)?.abort(new Error('cancelled by the member'));
    class StoreWatched extends ResultStore {
      override async putMany(entries: readonly (readonly [string, Buffer])[]): Promise<void> {
        await super.putMany(entries);
        during.store?.(abort);
      }
    }
    const results = new StoreWatched(redis, prefix, 60);
    const classifier = {
      backend: 'fixed',
      classify: async () => {
        during.check?.(abort);
        return { nsfwScore: 0.01, top: 'Neutral', scores: { Neutral: 0.99 } };
      },
    };
    const process = createProcessor({
      chain: new BackendChain({ backends: [backend], log, price: () => 0 }),
      results,
      log,
      running,
      classifier: async () => classifier,
      ...(shutdown ? { shutdown } : {}),
    });
    const request = { ...parseImagineOptions({ prompt: 'a statue', steps: 2 }), width: 64, height: 64 };
    const run = () => process(fakeJob({ v: 1, jobId, guildId: 'g', request, paidAllowed: false, nsfwAllowed: false }), 'token');
    return { results, jobId, run };
  }

  test('a cancel arriving while the image is checked ends the job as cancelled, with the attempt that ran; nothing is stored for posting', async ({
    redisPrefix,
  }) => {
    const s = await screened(redisPrefix, { check: (abort) => abort() });
    await expect(s.run()).rejects.toBeInstanceOf(UnrecoverableError);
    expect(await s.results.getFailure(s.jobId)).toEqual({
      code: 'cancelled',
      message: 'the job was cancelled.',
      attempts: [expect.objectContaining({ backend: 'a1111', outcome: 'succeeded' })],
    });
    expect(await redis.exists(s.results.imageKey(s.jobId, 0))).toBe(0);
  });

  test('a cancel arriving while the images are stored still ends the job as cancelled, not with a result', async ({ redisPrefix }) => {
    const s = await screened(redisPrefix, { store: (abort) => abort() });
    await expect(s.run()).rejects.toBeInstanceOf(UnrecoverableError);
    expect(await s.results.getFailure(s.jobId)).toMatchObject({
      code: 'cancelled',
      attempts: [{ backend: 'a1111', outcome: 'succeeded' }],
    });
  });

  test('a worker shutting down after the backend returned is no cancel: the job still ends with its result', async ({ redisPrefix }) => {
    const shutdown = new AbortController();
    const s = await screened(redisPrefix, { check: () => shutdown.abort() }, shutdown.signal);
    const result = await s.run();
    expect(result.imageKeys).toEqual([s.results.imageKey(s.jobId, 0)]);
    expect(await s.results.getFailure(s.jobId)).toBeNull();
  });
});
