import { randomUUID } from 'node:crypto';
import type { InputService } from '../commands/context.js';
import type { BotConfig } from '../core/config.js';
import { fetchAttachment } from '../core/io/attachments.js';
import type { ResultStore } from '../core/io/results.js';

/**
 * Input images for the worker: fetched as hostile input (allowed origins only, size and pixel caps
 * before decoding), prepared, and parked in Redis under fresh keys the job's request names.
 */
export function createInputService(o: {
  config: Pick<BotConfig, 'DISCORD_ATTACHMENT_ORIGINS' | 'ATTACHMENT_MAX_BYTES' | 'ATTACHMENT_MAX_PIXELS'>;
  results: Pick<ResultStore, 'inputKey' | 'put' | 'putMany'>;
}): InputService {
  const limits = {
    allowedOrigins: o.config.DISCORD_ATTACHMENT_ORIGINS,
    maxBytes: o.config.ATTACHMENT_MAX_BYTES,
    maxPixels: o.config.ATTACHMENT_MAX_PIXELS,
  };
  return {
    async inpaint(imageUrl, maskUrl) {
      const [image, mask] = await Promise.all([fetchAttachment(imageUrl, limits), maskUrl ? fetchAttachment(maskUrl, limits) : null]);
      // libvips is loaded with the first /inpaint, not at start.
      const { prepareInpaint } = await import('../core/io/inpaint-image.js');
      const prepared = await prepareInpaint(image.bytes, mask?.bytes ?? null, { maxPixels: limits.maxPixels });
      const id = randomUUID();
      const inputKeys = {
        image: o.results.inputKey(id, 'image'),
        mask: o.results.inputKey(id, 'mask'),
        original: o.results.inputKey(id, 'original'),
        maskFull: o.results.inputKey(id, 'maskFull'),
      };
      await o.results.putMany([
        [inputKeys.image, prepared.image],
        [inputKeys.mask, prepared.mask],
        [inputKeys.original, prepared.original.png],
        [inputKeys.maskFull, prepared.maskFull],
      ]);
      return { inputKeys, width: prepared.width, height: prepared.height };
    },

    async postedImage(url) {
      const image = await fetchAttachment(url, limits);
      const key = o.results.inputKey(randomUUID(), 'image');
      await o.results.put(key, image.bytes);
      return key;
    },
  };
}
