import { expect, test } from 'vitest';
import { decodeCustomId, encodeCustomId } from '../../core/custom-id.js';

const jobId = '0b6a4a8e-8d53-4a43-9d1e-2b7a1f0c9e11';

test('a button id round-trips and stays within 100 characters', () => {
  const id = encodeCustomId({ action: 'upscale', jobId, index: 3 });
  expect(id.length).toBeLessThanOrEqual(100);
  expect(decodeCustomId(id)).toEqual({ action: 'upscale', v: 1, jobId, index: 3 });
});

test.each([
  'upscale_job123_1',
  `delete:2:${jobId}`,
  `explode:1:${jobId}`,
  `cancel:1:not-a-uuid`,
  `vary:1:${jobId}:9`,
  `cancel:1:${jobId}:0:extra`,
  'x'.repeat(101),
])('forged or stale id %s is refused', (raw) => {
  expect(decodeCustomId(raw)).toBeNull();
});
