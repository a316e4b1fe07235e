import { expect, test } from 'vitest';
import { declaredMaskMismatch, maskFits } from '../../core/inpaint-mask.js';

test('a mask fits an image of the same proportions, whatever its size; within 2 % or a pixel', () => {
  expect(maskFits({ width: 96, height: 64 }, { width: 192, height: 128 })).toBe(true);
  expect(maskFits({ width: 1000, height: 750 }, { width: 1000, height: 760 })).toBe(true);
  expect(maskFits({ width: 96, height: 64 }, { width: 64, height: 64 })).toBe(false);
});

test('declared sizes refuse a mask that fits the image in neither orientation, naming both sizes', () => {
  expect(declaredMaskMismatch({ width: 96, height: 64 }, { width: 64, height: 64 })).toBe(
    'The mask is 64×64 but the image is 96×64. The mask must have the same proportions as the image (ideally the same size).',
  );
  expect(declaredMaskMismatch({ width: 96, height: 64 }, { width: 48, height: 32 })).toBeNull();
  // A stored size is before EXIF orientation: a quarter-turned fit is left to the check on the decoded files.
  expect(declaredMaskMismatch({ width: 96, height: 64 }, { width: 64, height: 96 })).toBeNull();
  // No declared size (not measured by Discord, or a client that sends none): nothing to judge here.
  expect(declaredMaskMismatch({ width: 96, height: 64 }, { width: null, height: null })).toBeNull();
  expect(declaredMaskMismatch({}, { width: 64, height: 64 })).toBeNull();
});
