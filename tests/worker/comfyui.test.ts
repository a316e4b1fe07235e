import sharp from 'sharp';
import { afterEach, expect, test } from 'vitest';
import { isBackendError, type BackendError } from '../../core/errors.js';
import { parseImagineOptions, type GenerationRequest } from '../../core/generation.js';
import { createLogger } from '../../core/io/logger.js';
import type { BackendProgress } from '../../worker/backends/backend.js';
import { createComfyUIBackend } from '../../worker/backends/comfyui.js';
import { startFakeComfyUI, type FakeComfyOptions } from '../fakes/comfyui.js';

const log = createLogger({ level: 'silent' });
let fake: Awaited<ReturnType<typeof startFakeComfyUI>> | undefined;
afterEach(async () => {
  await fake?.close();
  fake = undefined;
});

async function setup(o: FakeComfyOptions = {}, checkpoint = 'sd_xl_base_1.0.safetensors', url?: string) {
  fake = await startFakeComfyUI(o);
  return createComfyUIBackend({ id: 'comfyui', url: url ?? fake.url, checkpoint, progressTimeoutMs: 600, log });
}

const req = (over: Partial<GenerationRequest> = {}): GenerationRequest => ({ ...parseImagineOptions({ prompt: 'a fox', negative: 'blurry', seed: 42, steps: 6 }), width: 64, height: 64, ...over });
function ctx(signal = new AbortController().signal) {
  const progress: BackendProgress[] = [];
  return { progress, signal, onProgress: (p: BackendProgress) => progress.push(p) };
}
async function failure(p: Promise<unknown>): Promise<BackendError> {
  const err = await p.then(() => null, (e: unknown) => e);
  if (!isBackendError(err)) throw new Error(`expected a BackendError, got ${String(err)}`);
  return err;
}

test('txt2img: the SDXL graph carries the job, progress and previews arrive, count PNGs of the asked size come back', async () => {
  const b = await setup();
  const c = ctx();
  const out = await b.generate({ jobId: 'j1', request: req({ count: 2 }) }, c);
  expect(out.images).toHaveLength(2);
  for (const img of out.images) expect(await sharp(img).metadata()).toMatchObject({ format: 'png', width: 64, height: 64 });
  const g = fake!.prompts[0]!;
  const byType = (t: string) => Object.values(g).filter((n) => n.class_type === t);
  expect(byType('CheckpointLoaderSimple')[0]!.inputs.ckpt_name).toBe('sd_xl_base_1.0.safetensors');
  expect(byType('CLIPTextEncode').map((n) => n.inputs.text)).toEqual(['a fox', 'blurry']);
  expect(byType('EmptyLatentImage')[0]!.inputs).toMatchObject({ width: 64, height: 64, batch_size: 2 });
  expect(byType('KSampler')[0]!.inputs).toMatchObject({ seed: 42, steps: 6, cfg: 7, denoise: 1 });
  expect(c.progress.filter((p) => p.total === 6).map((p) => p.step)).toEqual([1, 2, 3, 4, 5, 6]);
  const preview = c.progress.find((p) => p.preview)?.preview;
  expect((await sharp(preview!).metadata()).format).toBe('png');
});

test('inpaint uploads image and mask and the graph uses them with denoise = strength', async () => {
  const b = await setup();
  const image = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#345' } }).png().toBuffer();
  const mask = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#fff' } }).png().toBuffer();
  const out = await b.generate({ jobId: 'j2', request: req({ kind: 'inpaint', strength: 0.6 }), image, mask }, ctx());
  expect(out.images).toHaveLength(1);
  expect(fake!.uploads.map((u) => u.name)).toEqual(['imagebot-j2-image.png', 'imagebot-j2-mask.png']);
  expect(fake!.uploads[0]!.data.equals(image)).toBe(true);
  const g = fake!.prompts[0]!;
  const node = (t: string) => Object.values(g).find((n) => n.class_type === t)!;
  expect(node('LoadImage').inputs.image).toBe('imagebot-j2-image.png');
  expect(node('LoadImageMask').inputs.image).toBe('imagebot-j2-mask.png');
  expect(node('KSampler').inputs.denoise).toBe(0.6);
});

test('an unknown checkpoint is a rejection that will not be retried', async () => {
  const b = await setup({}, 'missing.safetensors');
  const err = await failure(b.generate({ jobId: 'j', request: req() }, ctx()));
  expect([err.kind, err.retryable, err.status]).toEqual(['rejected', false, 400]);
});

test.each([
  ['a refused connection', 'unavailable', {}, 'http://127.0.0.1:9'],
  ['a 500 on /prompt', 'unavailable', { mode: 'error500' as const }, undefined],
  ['a hang (no progress)', 'timeout', { mode: 'hang' as const }, undefined],
  ['dying mid-job', 'unavailable', { mode: 'die-mid-job' as const }, undefined],
])('%s fails fast and retryable (kind %s)', async (_n, kind, o, url) => {
  const b = await setup(o, undefined, url);
  const t0 = performance.now();
  const err = await failure(b.generate({ jobId: 'j', request: req({ steps: 20 }) }, ctx()));
  expect(err.kind).toBe(kind);
  expect(err.retryable).toBe(true);
  expect(performance.now() - t0).toBeLessThan(3000);
});

test('cancel while running interrupts the prompt; two jobs never overlap on the server', async () => {
  const b = await setup({ stepDelayMs: 30 });
  const ac = new AbortController();
  const first = b.generate({ jobId: 'a', request: req({ steps: 40 }) }, ctx(ac.signal));
  const second = b.generate({ jobId: 'b', request: req({ steps: 2 }) }, ctx());
  await new Promise((r) => setTimeout(r, 300));
  ac.abort();
  const err = await failure(first);
  expect([err.kind, err.retryable]).toEqual(['cancelled', false]);
  expect((await second).images).toHaveLength(1);
  expect(fake!.interrupts).toBeGreaterThanOrEqual(1);
  expect(fake!.maxConcurrent).toBe(1);
});

test('health reports the GPU, and a dead server as down', async () => {
  const b = await setup();
  expect(await b.health()).toMatchObject({ ok: true, detail: expect.stringContaining('Fake RTX') });
  const dead = createComfyUIBackend({ id: 'c2', url: 'http://127.0.0.1:9', checkpoint: 'x', progressTimeoutMs: 500, log });
  expect((await dead.health()).ok).toBe(false);
});
