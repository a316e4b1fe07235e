import type { Job } from 'bullmq';
import { Redis } from 'ioredis';
import sharp from 'sharp';
import { afterAll, describe, expect, test } from 'vitest';
import { type JobPayload, type JobProgress, type JobResult, parseImagineOptions } from '../../core/generation.js';
import { createLogger } from '../../core/io/logger.js';
import { ResultStore } from '../../core/io/results.js';
import { createA1111Backend } from '../../worker/backends/a1111.js';
import { BackendChain } from '../../worker/backends/chain.js';
import { createProcessor } from '../../worker/processor.js';
import { fixedClassifier, loadNsfwClassifier } from '../../worker/safety/classifier.js';
import { startFakeA1111 } from '../fakes/a1111.js';

const log = createLogger({ level: 'silent' });
const redis = new Redis(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379');
const prefix = `t:safety:${Date.now()}`;
afterAll(async () => {
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length) await redis.del(...keys);
  await redis.quit();
});

function fakeJob(payload: JobPayload, progress: JobProgress[] = []): Job<JobPayload, JobResult> {
  return {
    id: payload.jobId,
    data: payload,
    attemptsMade: 0,
    opts: { attempts: 3 },
    updateProgress: async (p: JobProgress) => {
      progress.push(p);
    },
  } as unknown as Job<JobPayload, JobResult>;
}

describe('output safety', () => {
  test('the real nsfwjs model runs on a safe image: scores sum to one and it is not flagged', async () => {
    const { data, info } = await sharp({ create: { width: 256, height: 256, channels: 3, background: { r: 90, g: 160, b: 220 } } })
      .raw()
      .toBuffer({ resolveWithObject: true });
    for (let i = 0; i < data.length; i += 3) data[i + 1] = (i / 3) % 256; // a gradient, not a flat colour
    const png = await sharp(data, { raw: info }).png().toBuffer();
    const listeners = process.listenerCount('unhandledRejection') + process.listenerCount('uncaughtException');
    const classifier = await loadNsfwClassifier();
    expect(classifier.backend).toBe('wasm');
    // The WASM runtime's crash-on-any-rejection listeners must not survive loading.
    expect(process.listenerCount('unhandledRejection') + process.listenerCount('uncaughtException')).toBe(listeners);
    const c = await classifier.classify(png);
    const sum = Object.values(c.scores).reduce((s, v) => s + v, 0);
    expect(sum).toBeGreaterThan(0.95);
    expect(sum).toBeLessThan(1.05);
    expect(c.nsfwScore).toBeLessThan(0.7);
  }, 60_000);

  test.each([
    [false, 'refused: stored as an unsafe failure, no image kept for posting'],
    [true, 'allowed in an age-restricted channel of an nsfw-channels guild'],
  ])('a flagged image when nsfwAllowed=%s is %s', async (nsfwAllowed) => {
    const box = await startFakeA1111();
    try {
      const chain = new BackendChain({
        backends: [createA1111Backend({ id: 'a1111', url: box.url, progressTimeoutMs: 2000, log })],
        log,
        price: () => 0,
      });
      const results = new ResultStore(redis, prefix, 60);
      const process = createProcessor({ chain, results, log, classifier: async () => fixedClassifier(0.99), nsfwThreshold: 0.7 });
      const jobId = crypto.randomUUID();
      const request = { ...parseImagineOptions({ prompt: 'a statue', steps: 2 }), width: 64, height: 64 };
      const run = process(fakeJob({ v: 1, jobId, guildId: 'g', request, paidAllowed: false, nsfwAllowed }));
      if (nsfwAllowed) {
        const r = await run;
        expect(await results.get(r.imageKeys[0]!)).not.toBeNull();
      } else {
        await expect(run).rejects.toThrow('unsafe');
        const failure = await results.getFailure(jobId);
        expect(failure).toMatchObject({ code: 'unsafe' });
        expect(failure!.message).toContain('flagged as NSFW');
        expect(failure!.attempts).toMatchObject([{ backend: 'a1111', outcome: 'succeeded' }]);
        expect(await redis.exists(results.imageKey(jobId, 0))).toBe(0);
      }
    } finally {
      await box.close();
    }
  });

  test.each([
    [false, 0.99, 'a strict guild whose classifier flags the previews: none is stored or reported, the result is held back'],
    [false, 0.01, 'a strict guild whose classifier passes the previews: they are shown'],
    [true, 0.99, 'an age-restricted channel of an nsfw-channels guild: previews are not screened'],
  ])('previews when nsfwAllowed=%s and the classifier scores %s: %s', async (nsfwAllowed, score) => {
    const box = await startFakeA1111({ stepDelayMs: 30 });
    try {
      const chain = new BackendChain({
        backends: [createA1111Backend({ id: 'a1111', url: box.url, pollIntervalMs: 20, progressTimeoutMs: 2000, log })],
        log,
        price: () => 0,
      });
      const results = new ResultStore(redis, prefix, 60);
      let screened = 0;
      const classifier = fixedClassifier(score);
      const counting = { ...classifier, classify: (png: Buffer) => (screened++, classifier.classify(png)) };
      const process = createProcessor({ chain, results, log, classifier: async () => counting, nsfwThreshold: 0.7, progressEveryMs: 0 });
      const jobId = crypto.randomUUID();
      const request = { ...parseImagineOptions({ prompt: 'a statue', steps: 12 }), width: 64, height: 64 };
      const progress: JobProgress[] = [];
      const run = process(fakeJob({ v: 1, jobId, guildId: 'g', request, paidAllowed: false, nsfwAllowed }, progress));
      const flagged = !nsfwAllowed && score >= 0.7;
      if (flagged) await expect(run).rejects.toThrow('unsafe');
      else await run;
      // The fake box sent previews while the job ran; whether any was passed on depends on the screen.
      expect(progress.filter((p) => p.step > 0).length).toBeGreaterThan(1);
      const shown = progress.filter((p) => p.previewKey);
      if (flagged) {
        expect(shown).toEqual([]);
        expect(await redis.exists(results.previewKey(jobId))).toBe(0);
        // One flagged preview stops the job's previews: later ones are not even classified.
        expect(screened).toBe(2); // the first preview, then the result
      } else {
        expect(shown.length).toBeGreaterThan(0);
        expect(await results.get(shown[0]!.previewKey!)).not.toBeNull();
        if (nsfwAllowed) expect(screened).toBe(0);
      }
    } finally {
      await box.close();
    }
  });
});
