import { describe, expect, test } from 'vitest';
import { isUserError } from '../../core/errors.js';
import { type GenerationRequest, parseImagineOptions } from '../../core/generation.js';
import { editDefaults, editedRequest, resultActions, upscaleRequest, upscaleSize, variationRequest } from '../../core/result-actions.js';
import { planMessages } from '../../core/upload-plan.js';

const base = (over: Record<string, unknown> = {}): GenerationRequest =>
  parseImagineOptions({ prompt: 'a red fox', count: 4, seed: 100, ...over }, () => 7);
const result = { width: 1024, height: 1024, seed: 100 };

function refused(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isUserError(err)) return err.code;
    throw err;
  }
  throw new Error('not refused');
}

describe('result actions', () => {
  test('txt2img results offer everything; inpaint cannot be rerolled; upscales cannot be varied or upscaled again', () => {
    expect(resultActions(base(), result)).toEqual({ reroll: true, edit: true, vary: true, upscale: true });
    expect(resultActions({ ...base(), kind: 'inpaint' }, result)).toMatchObject({ reroll: false, edit: false, vary: true });
    expect(resultActions({ ...base(), kind: 'upscale' }, { width: 2048, height: 2048 })).toEqual({
      reroll: false,
      edit: false,
      vary: false,
      upscale: false,
    });
  });

  test('upscale doubles the size, capped near four megapixels, in multiples of 8; no button when the gain is small', () => {
    expect(upscaleSize(1024, 1024)).toEqual({ width: 2048, height: 2048 });
    const wide = upscaleSize(1344, 768)!;
    expect(wide.width * wide.height).toBeLessThanOrEqual(2048 * 2048);
    expect((wide.width % 8) + (wide.height % 8)).toBe(0);
    expect(wide.width / wide.height).toBeCloseTo(1344 / 768, 1);
    expect(upscaleSize(1800, 1800)).toBeNull();
    expect(upscaleSize(2048, 2048)).toBeNull();
  });

  test('a variation is one img2img image at the source size, new seed, pointing at its source image', () => {
    const v = variationRequest({ jobId: 'j1', request: base(), result, index: 2 }, 555);
    expect(v).toMatchObject({
      kind: 'img2img',
      count: 1,
      seed: 555,
      width: 1024,
      height: 1024,
      strength: 0.6,
      source: { jobId: 'j1', index: 2 },
      prompt: 'a red fox',
    });
    expect(v.inputKeys).toBeUndefined();
  });

  test('a variation of a large inpainted photo is made at about one megapixel, same aspect', () => {
    const v = variationRequest(
      { jobId: 'j1', request: { ...base(), kind: 'inpaint' }, result: { ...result, width: 4000, height: 3000 }, index: 0 },
      1,
    );
    expect(v.width * v.height).toBeLessThanOrEqual(1.1 * 1024 * 1024);
    expect(v.width / v.height).toBeCloseTo(4 / 3, 1);
    expect((v.width % 64) + (v.height % 64)).toBe(0);
    expect(variationRequest({ jobId: 'j1', request: base(), result: { ...result, width: 1344, height: 768 }, index: 0 }, 1)).toMatchObject({
      width: 1344,
      height: 768,
    });
  });

  test('an upscale keeps the image’s own seed (seed + index) and asks for twice the size', () => {
    const u = upscaleRequest({ jobId: 'j1', request: base(), result, index: 3 });
    expect(u).toMatchObject({ kind: 'upscale', count: 1, seed: 103, width: 2048, height: 2048, strength: 0.3 });
  });

  test('an index beyond the job’s images is a stale button; an upscale at the cap is refused', () => {
    expect(refused(() => variationRequest({ jobId: 'j', request: base({ count: 2 }), result, index: 3 }, 1))).toBe('stale_button');
    expect(refused(() => upscaleRequest({ jobId: 'j', request: base(), result: { ...result, width: 2048, height: 2048 }, index: 0 }))).toBe(
      'action_unavailable',
    );
  });

  test('the Edit modal starts from the member’s words; the edited job gets the preset’s style back', () => {
    const photo = base({ preset: 'photo', negative: 'blurry' });
    expect(photo.prompt).toMatch(/^a red fox, photograph/);
    expect(editDefaults(photo)).toEqual({ prompt: 'a red fox', negative: 'blurry' });
    const edited = editedRequest(photo, { prompt: '  a blue fox ', negative: '' }, 9);
    expect(edited.prompt).toMatch(/^a blue fox, photograph/);
    expect(edited.negative).toBe('cartoon, illustration, painting');
    expect(edited).toMatchObject({ memberPrompt: 'a blue fox', seed: 9, steps: photo.steps, count: 4 });
    expect(edited.memberNegative).toBeUndefined();
    expect(refused(() => editedRequest(photo, { prompt: '   ' }, 1))).toBe('invalid_option');
    expect(refused(() => editedRequest(photo, { prompt: 'x'.repeat(1501) }, 1))).toBe('prompt_too_long');
    expect(refused(() => editedRequest({ ...photo, kind: 'inpaint' }, { prompt: 'x' }, 1))).toBe('action_unavailable');
  });

  test('jobs stored before the member’s words were kept fall back to the stored prompt', () => {
    const { memberPrompt: _p, memberNegative: _n, ...old } = base({ negative: 'dark' });
    expect(editDefaults(old)).toEqual({ prompt: 'a red fox', negative: 'dark' });
  });
});

describe('planMessages', () => {
  test('everything in one message when it fits', () => {
    expect(planMessages([100, 200, 300], 1000)).toEqual([[0, 1, 2]]);
  });

  test('splits in order so no message exceeds the limit; the first file opens the first message', () => {
    const sizes = [300, 600, 500, 400, 100];
    const plan = planMessages(sizes, 1000);
    expect(plan).toEqual([
      [0, 1],
      [2, 3, 4],
    ]);
    for (const m of plan) expect(m.reduce((n, i) => n + sizes[i]!, 0)).toBeLessThanOrEqual(1000);
  });

  test('at most ten files per message', () => {
    expect(planMessages(Array(12).fill(1), 1000).map((m) => m.length)).toEqual([10, 2]);
  });

  test('a file over the limit on its own is a programming error (files are fitted first)', () => {
    expect(() => planMessages([2000], 1000)).toThrow(/exceeds/);
  });
});
