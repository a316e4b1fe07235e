import sharp from 'sharp';
import { beforeAll, expect, test } from 'vitest';
import { OUTPUT_LIMITS } from '../../core/image-limits.js';
import { fitForUpload } from '../../core/io/fit-upload.js';
import { makeGrid } from '../../core/io/grid.js';

/** A real image just over the output pixel cap (a little over 16 MP), cheap to make: one colour compresses to almost nothing. */
let overCap: Buffer;
beforeAll(async () => {
  overCap = await sharp({ create: { width: 4100, height: 4000, channels: 3, background: '#222' } })
    .png()
    .toBuffer();
  expect(4100 * 4000).toBeGreaterThan(OUTPUT_LIMITS.maxPixels);
});

test('the grid and the upload fitting decode nothing over the output pixel cap (libvips is told the cap too)', async () => {
  await expect(makeGrid([overCap, overCap])).rejects.toThrow(/pixel limit/);
  await expect(fitForUpload(overCap, 1024, 'image-1')).rejects.toThrow(/pixel limit/);
});
