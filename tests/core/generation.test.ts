import { describe, expect, test } from 'vitest';
import { isUserError } from '../../core/errors.js';
import { ASPECTS, aspectToSize, LIMITS, parseImagineOptions, parseJobResult } from '../../core/generation.js';
import { ranText } from '../../core/messages.js';

describe('aspect to size', () => {
  test.each(ASPECTS)('%s maps to multiples of 64 within 10%% of one megapixel, keeping the ratio', (aspect) => {
    const { width, height } = aspectToSize(aspect);
    expect(width % 64).toBe(0);
    expect(height % 64).toBe(0);
    expect(Math.abs(width * height - 1024 * 1024) / (1024 * 1024)).toBeLessThan(0.1);
    const [w, h] = aspect.split(':').map(Number) as [number, number];
    expect(Math.abs(width / height - w / h) / (w / h)).toBeLessThan(0.08);
  });

  test('SDXL buckets: 1:1 is 1024², 16:9 is 1344×768, 9:16 is 768×1344', () => {
    expect(aspectToSize('1:1')).toEqual({ width: 1024, height: 1024 });
    expect(aspectToSize('16:9')).toEqual({ width: 1344, height: 768 });
    expect(aspectToSize('9:16')).toEqual({ width: 768, height: 1344 });
  });
});

describe('parseImagineOptions', () => {
  test('seed, count, steps and guidance pass through; aspect sets the size', () => {
    const r = parseImagineOptions({ prompt: 'a cat', seed: 42, count: 3, aspect: '16:9', steps: 20, guidance: 5.5 });
    expect(r).toMatchObject({ prompt: 'a cat', seed: 42, count: 3, width: 1344, height: 768, steps: 20, guidance: 5.5, kind: 'txt2img' });
  });

  test('defaults: one image, 1024², a random seed, the default preset', () => {
    const r = parseImagineOptions({ prompt: 'a cat' }, () => 7);
    expect(r).toMatchObject({ count: 1, width: 1024, height: 1024, seed: 7, preset: 'sdxl', steps: 30 });
  });

  test('a 5000-character prompt is refused with a message naming the limit', () => {
    let err: unknown;
    try {
      parseImagineOptions({ prompt: 'x'.repeat(5000) });
    } catch (e) {
      err = e;
    }
    expect(isUserError(err)).toBe(true);
    expect((err as { userMessage: string }).userMessage).toContain(String(LIMITS.promptMax));
    expect((err as { code: string }).code).toBe('prompt_too_long');
  });

  test.each([
    [{ prompt: 'a', count: 5 }, 'count'],
    [{ prompt: 'a', steps: 0 }, 'steps'],
    [{ prompt: 'a', guidance: 50 }, 'guidance'],
    [{ prompt: 'a', aspect: '5:1' }, 'aspect'],
    [{ prompt: 'a', preset: 'nope' }, 'preset'],
    [{ prompt: '   ' }, 'empty'],
  ])('out-of-range %j is refused naming %s', (raw, word) => {
    expect(() => parseImagineOptions(raw)).toThrow(word);
  });

  test('a preset adds its style words and negative prompt', () => {
    const r = parseImagineOptions({ prompt: 'a cat', preset: 'photo', negative: 'blurry' });
    expect(r.prompt).toMatch(/^a cat, photograph/);
    expect(r.negative).toBe('blurry, cartoon, illustration, painting');
  });
});

describe('steps and guidance shown for a result', () => {
  const old = { backend: 'a1111', seed: 1, width: 1024, height: 1024, imageKeys: ['k'], runMs: 1, costUsd: 0, attempts: [] };

  test('a result of an older worker still parses and shows the request’s; a newer one shows what ran', () => {
    const r = parseImagineOptions({ prompt: 'a cat', preset: 'fast', steps: 30 }, () => 1);
    const parsed = parseJobResult(JSON.stringify(old));
    expect(parsed.success).toBe(true);
    expect(ranText(r, parsed.success ? parsed.data : null)).toEqual({ steps: '30', guidance: '1' });
    expect(ranText(r, { steps: 4, guidance: null })).toEqual({
      steps: "4 (asked 30; the preset's most)",
      guidance: '— (the model takes none)',
    });
    // The preset's own steps were not asked for: nothing to explain.
    expect(
      ranText(
        parseImagineOptions({ prompt: 'a cat', preset: 'turbo' }, () => 1),
        { steps: 4, guidance: 0 },
      ),
    ).toEqual({
      steps: '4',
      guidance: '0',
    });
  });
});
