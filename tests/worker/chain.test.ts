import sharp from 'sharp';
import { afterEach, describe, expect, test } from 'vitest';
import { parseImagineOptions } from '../../core/generation.js';
import { createLogger } from '../../core/io/logger.js';
import { priceAttempt } from '../../core/pricing.js';
import { createA1111Backend } from '../../worker/backends/a1111.js';
import { BackendChain, ChainError } from '../../worker/backends/chain.js';
import { createHuggingFaceBackend } from '../../worker/backends/huggingface.js';
import { createReplicateBackend, DEFAULT_SDXL_VERSION, REPLICATE_IMAGE_INPUT_MAX_PIXELS } from '../../worker/backends/replicate.js';
import { type FakeA1111, type FakeA1111Mode, startFakeA1111 } from '../fakes/a1111.js';
import { startFakeHFEndpoint } from '../fakes/huggingface.js';
import { startFakeReplicate } from '../fakes/replicate.js';

const log = createLogger({ level: 'silent' });
const prices = {
  a1111UsdPerGpuHour: 0,
  comfyuiUsdPerGpuHour: 0,
  replicateUsdPerSecond: 0.001,
  replicateFluxUsdPerImage: 0.003,
  hfUsdPerRequest: 0.01,
  hfUsdPerEndpointHour: 0,
};
let closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(closers.map((c) => c()));
  closers = [];
});

async function setup(opts: { mode?: FakeA1111Mode; refused?: boolean; hfMode?: 'ok' | 'error500' } = {}) {
  const box: FakeA1111 = await startFakeA1111({ stepDelayMs: 5, mode: opts.mode ?? 'ok' });
  const hf = await startFakeHFEndpoint({ mode: opts.hfMode ?? 'ok' });
  closers.push(
    () => box.close(),
    () => hf.close(),
  );
  const gpu = createA1111Backend({
    id: 'a1111',
    url: opts.refused ? 'http://127.0.0.1:9' : box.url,
    progressTimeoutMs: 500,
    pollIntervalMs: 50,
    log,
  });
  const cloud = createHuggingFaceBackend({ id: 'huggingface', token: 'hf_x', endpointUrl: hf.url, requestTimeoutMs: 2000, log });
  const chain = new BackendChain({
    backends: [gpu, cloud],
    log,
    price: (b, r, s, n) => priceAttempt(prices, { family: b.family, billedSeconds: s, billedImages: n, replicateModel: r.replicateModel }),
    breakerThreshold: 3,
    probeIntervalMs: 200,
  });
  closers.push(async () => chain.stopProbes());
  return { box, hf, chain };
}

const job = () => ({ jobId: 'j', request: { ...parseImagineOptions({ prompt: 'a fox', steps: 4 }), width: 64, height: 64 } });
const ctx = () => ({ signal: new AbortController().signal, onProgress: () => undefined });

describe('the fallback chain', () => {
  test.each<[string, { mode?: FakeA1111Mode; refused?: boolean }]>([
    ['refused', { refused: true }],
    ['hang', { mode: 'hang' }],
    ['500', { mode: 'error500' }],
    ['garbage body', { mode: 'garbage' }],
    ['wrong image size', { mode: 'wrong-size' }],
    ['dying mid-job', { mode: 'die-mid-job' }],
  ])('a GPU box that fails (%s) hands the job to the next backend, which makes the image', async (_name, o) => {
    const { chain, hf } = await setup(o);
    const r = await chain.run(job(), ctx(), { paidAllowed: true });
    expect(r.backend.id).toBe('huggingface');
    expect(r.output.images).toHaveLength(1);
    expect(hf.requests).toHaveLength(1);
    expect(r.attempts.map((a) => [a.backend, a.outcome])).toEqual([
      ['a1111', 'failed'],
      ['huggingface', 'succeeded'],
    ]);
    expect(r.attempts[1]!.costUsd).toBeCloseTo(0.01, 6);
  });

  test('after three failures the circuit opens and the next job skips the dead box without waiting', async () => {
    const { chain, box } = await setup({ mode: 'hang' });
    for (let i = 0; i < 3; i++) await chain.run(job(), ctx(), { paidAllowed: true });
    expect(chain.circuitState('a1111')).toBe('open');
    const before = box.requests.filter((r) => r.path === '/sdapi/v1/txt2img').length;
    const t0 = performance.now();
    const r = await chain.run(job(), ctx(), { paidAllowed: true });
    expect(performance.now() - t0).toBeLessThan(400); // far below the 500 ms hang detection
    expect(r.attempts[0]).toMatchObject({ backend: 'a1111', outcome: 'skipped', detail: 'circuit open' });
    expect(box.requests.filter((r2) => r2.path === '/sdapi/v1/txt2img').length).toBe(before);
  });

  test('a healthy probe closes the circuit again and jobs return to the GPU box', async () => {
    const { chain, box } = await setup({ mode: 'error500' });
    for (let i = 0; i < 3; i++) await chain.run(job(), ctx(), { paidAllowed: true });
    expect(chain.circuitState('a1111')).toBe('open');
    box.setMode('ok');
    chain.startProbes();
    for (let i = 0; i < 50 && chain.circuitState('a1111') !== 'closed'; i++) await new Promise((r) => setTimeout(r, 50));
    expect(chain.circuitState('a1111')).toBe('closed');
    const r = await chain.run(job(), ctx(), { paidAllowed: true });
    expect(r.backend.id).toBe('a1111');
  });

  test('a member’s job is never the half-open trial: once the circuit has been open long enough, jobs still skip the box until a probe closes it', async () => {
    const { chain, box, hf } = await setup({ mode: 'error500' });
    const boxRequests = () => box.requests.filter((r) => r.path === '/sdapi/v1/txt2img').length;
    for (let i = 0; i < 3; i++) await chain.run(job(), ctx(), { paidAllowed: true });
    expect(chain.circuitState('a1111')).toBe('open');
    const before = boxRequests();
    // Past halfOpenAfter (the 200 ms probe interval), with no probe run yet: the box answers 500 still.
    await new Promise((r) => setTimeout(r, 300));
    const r = await chain.run(job(), ctx(), { paidAllowed: true });
    expect(r.backend.id).toBe('huggingface');
    expect(r.attempts[0]).toMatchObject({ backend: 'a1111', outcome: 'skipped', detail: 'circuit open' });
    expect(boxRequests()).toBe(before);
    expect(chain.circuitState('a1111')).toBe('open');
    // The probe is the trial: healthy again, it closes the circuit and jobs go back to the box.
    box.setMode('ok');
    await chain.probeOpenCircuits();
    expect(chain.circuitState('a1111')).toBe('closed');
    expect((await chain.run(job(), ctx(), { paidAllowed: true })).backend.id).toBe('a1111');
    expect(hf.requests.length).toBeGreaterThanOrEqual(4);
  });

  test('a box that stops answering opens its circuit on the first job, given up within the dead-box time rather than the progress timeout', async () => {
    const box: FakeA1111 = await startFakeA1111({ mode: 'freeze' });
    const hf = await startFakeHFEndpoint();
    closers.push(
      () => box.close(),
      () => hf.close(),
    );
    const chain = new BackendChain({
      backends: [
        createA1111Backend({ id: 'a1111', url: box.url, progressTimeoutMs: 30_000, deadAfterMs: 300, pollIntervalMs: 50, log }),
        createHuggingFaceBackend({ id: 'huggingface', token: 'hf_x', endpointUrl: hf.url, requestTimeoutMs: 2000, log }),
      ],
      log,
      price: () => 0,
      breakerThreshold: 3,
      probeIntervalMs: 60_000,
    });
    const first = await chain.run(job(), ctx(), { paidAllowed: true });
    expect(first.backend.id).toBe('huggingface');
    expect(first.attempts[0]).toMatchObject({ backend: 'a1111', outcome: 'failed', errorKind: 'unavailable' });
    expect(first.attempts[0]!.seconds).toBeLessThan(10);
    expect(chain.circuitState('a1111')).toBe('open');
    const second = await chain.run(job(), ctx(), { paidAllowed: true });
    expect(second.attempts[0]).toMatchObject({ backend: 'a1111', outcome: 'skipped', detail: 'circuit open' });
    // One generation request reached the frozen box, not one per job (and none was retried there).
    expect(box.jobs.length + box.requests.filter((r) => r.path === '/sdapi/v1/txt2img').length).toBeLessThanOrEqual(2);
    expect(box.requests.filter((r) => r.path === '/sdapi/v1/txt2img')).toHaveLength(1);
  });

  test('with the budget spent, paid providers are skipped: the job fails clearly when no free backend can run it', async () => {
    const { chain, hf } = await setup({ refused: true });
    const err = await chain.run(job(), ctx(), { paidAllowed: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChainError);
    expect((err as ChainError).attempts.find((a) => a.backend === 'huggingface')).toMatchObject({
      outcome: 'skipped',
      detail: 'budget spent',
    });
    expect(hf.requests).toHaveLength(0);
    // The free box was down too, so this is "try later", not a budget refusal.
    expect((err as ChainError).code).toBe('all_backends_failed');
  });

  test('with the budget spent and the GPU box healthy, the free box does the job and nothing is spent', async () => {
    const { chain, hf } = await setup();
    const r = await chain.run(job(), ctx(), { paidAllowed: false });
    expect(r.backend.id).toBe('a1111');
    expect(r.attempts.reduce((s, a) => s + a.costUsd, 0)).toBe(0);
    expect(hf.requests).toHaveLength(0);
  });

  test('everything down: a retryable failure that names no internal detail', async () => {
    const { chain } = await setup({ refused: true, hfMode: 'error500' });
    const err = (await chain.run(job(), ctx(), { paidAllowed: true }).catch((e: unknown) => e)) as ChainError;
    expect(err.code).toBe('all_backends_failed');
    expect(err.retryable).toBe(true);
    expect(err.userMessage).not.toMatch(/127\.0\.0\.1|HTTP|ECONN/);
    expect(err.attempts.map((a) => a.outcome)).toEqual(['failed', 'failed']);
  });

  test('an image pass bigger than Replicate takes is skipped with the reason logged, not sent and failed', async () => {
    const replicateFake = await startFakeReplicate({ durationMs: 50 });
    closers.push(() => replicateFake.close());
    const lines: string[] = [];
    const captured = createLogger({ level: 'info', destination: { write: (l: string) => void lines.push(l) } });
    const replicate = createReplicateBackend({
      id: 'replicate',
      token: 'r8_fake',
      baseUrl: replicateFake.url,
      outputOrigins: [new URL(replicateFake.url).origin],
      sdxlVersion: DEFAULT_SDXL_VERSION,
      waitSeconds: 5,
      pollIntervalMs: 50,
      log,
    });
    const chain = new BackendChain({ backends: [replicate], log: captured, price: () => 0 });
    const upscale = async (width: number, height: number) => ({
      jobId: 'u',
      request: { ...parseImagineOptions({ prompt: 'a fox', steps: 4 }), kind: 'upscale' as const, width, height, strength: 0.3 },
      image: await sharp({ create: { width, height, channels: 3, background: '#123456' } })
        .png()
        .toBuffer(),
    });

    // 2048×1536 (3.1 MP, a 2× upscale of 1024×768) is within the chain's overall 2048² but not Replicate's image-input limit.
    expect(2048 * 1536).toBeGreaterThan(REPLICATE_IMAGE_INPUT_MAX_PIXELS);
    const err = (await chain.run(await upscale(2048, 1536), ctx(), { paidAllowed: true }).catch((e: unknown) => e)) as ChainError;
    expect(err).toBeInstanceOf(ChainError);
    expect([err.code, err.retryable]).toEqual(['unsupported', false]);
    expect(replicateFake.predictions).toHaveLength(0);
    const skip = lines
      .map((l) => JSON.parse(l) as { msg: string; backend?: string; reason?: string })
      .find((l) => l.msg === 'backend skipped: unsupported');
    expect(skip).toMatchObject({
      backend: 'replicate',
      reason: `cannot make upscale at 2048×1536 (at most ${REPLICATE_IMAGE_INPUT_MAX_PIXELS} pixels)`,
    });

    // The same kind at a size it takes goes through; txt2img keeps the larger overall limit.
    const ok = await chain.run(await upscale(1024, 768), ctx(), { paidAllowed: true });
    expect(ok.backend.id).toBe('replicate');
    expect(replicateFake.predictions).toHaveLength(1);
    expect(replicate.capabilities.maxPixels).toBe(2048 * 2048);
  });

  test('a Hugging Face failure partway through a job is retried for the missing images only, and every served image is booked', async () => {
    const hf = await startFakeHFEndpoint({ modeByPost: { 2: 'error500' } });
    closers.push(() => hf.close());
    const chain = new BackendChain({
      backends: [createHuggingFaceBackend({ id: 'huggingface', token: 'hf_x', endpointUrl: hf.url, requestTimeoutMs: 2000, log })],
      log,
      price: (b, _r, s, n) => priceAttempt(prices, { family: b.family, billedSeconds: s, billedImages: n }),
    });
    const two = () => ({ ...job(), request: { ...job().request, count: 2 } });
    const booked = (attempts: { costUsd: number }[]) => attempts.reduce((s, a) => s + a.costUsd, 0);

    // Image 2 fails once: the retry asks for image 2 alone; two images served, two booked.
    const r = await chain.run(two(), ctx(), { paidAllowed: true });
    expect(r.output.images).toHaveLength(2);
    const seed = r.output.seed;
    expect(hf.requests.map((q) => q.body.parameters.seed)).toEqual([seed, seed + 1, seed + 1]);
    expect(booked(r.attempts)).toBeCloseTo(0.02, 6);

    // Image 2 fails on the retry too: the job fails, and the image served is booked on the failed attempt.
    hf.options.modeByPost = { 5: 'error500', 6: 'error500' };
    const err = (await chain.run(two(), ctx(), { paidAllowed: true }).catch((e: unknown) => e)) as ChainError;
    expect(err).toBeInstanceOf(ChainError);
    expect(hf.requests).toHaveLength(6);
    expect(err.attempts).toMatchObject([{ backend: 'huggingface', outcome: 'failed', errorKind: 'unavailable' }]);
    expect(booked(err.attempts)).toBeCloseTo(0.01, 6);
  });
});
