import { randomUUID } from 'node:crypto';
import type { InputKeys, InputService } from '../commands/context.js';
import type { BotConfig } from '../core/config.js';
import { UserError } from '../core/errors.js';
import { fetchAttachment, precheckAttachment } from '../core/io/attachments.js';
import type { ImageTasks } from '../core/io/image-tasks.js';
import type { ResultStore } from '../core/io/results.js';
import type { ThreadPool } from '../core/io/thread-pool.js';

/**
 * Input images for the worker: fetched as hostile input (allowed origins only, size and pixel caps
 * before decoding), prepared on the bot's thread pool (decoding a 16 MP upload on the main thread
 * would hold up every acknowledgement; the pool also bounds how many decode at once), and parked
 * in Redis under the keys the admitted job's request already names. Nothing here runs before the
 * job is admitted.
 */
export function createInputService(o: {
  config: Pick<BotConfig, 'DISCORD_ATTACHMENT_ORIGINS' | 'ATTACHMENT_MAX_BYTES' | 'ATTACHMENT_MAX_PIXELS'>;
  results: Pick<ResultStore, 'inputKey' | 'put' | 'putMany'>;
  cpu: Pick<ThreadPool<ImageTasks>, 'run'>;
}): InputService {
  const limits = {
    allowedOrigins: o.config.DISCORD_ATTACHMENT_ORIGINS,
    maxBytes: o.config.ATTACHMENT_MAX_BYTES,
    maxPixels: o.config.ATTACHMENT_MAX_PIXELS,
  };
  return {
    keys(): InputKeys {
      const id = randomUUID();
      return {
        image: o.results.inputKey(id, 'image'),
        mask: o.results.inputKey(id, 'mask'),
        original: o.results.inputKey(id, 'original'),
        maskFull: o.results.inputKey(id, 'maskFull'),
      };
    },

    precheck(attachment) {
      precheckAttachment(attachment, limits);
    },

    async inpaint(imageUrl, maskUrl, keys) {
      const [image, mask] = await Promise.all([fetchAttachment(imageUrl, limits), maskUrl ? fetchAttachment(maskUrl, limits) : null]);
      const done = await o.cpu.run('prepareUpload', image.bytes, mask?.bytes ?? null, { maxPixels: limits.maxPixels });
      if ('refused' in done) throw new UserError('attachment_rejected', done.refused);
      const { prepared } = done;
      await o.results.putMany([
        [keys.image, prepared.image],
        [keys.mask, prepared.mask],
        [keys.original, prepared.original.png],
        [keys.maskFull, prepared.maskFull],
      ]);
      return { width: prepared.width, height: prepared.height };
    },

    async postedImage(url, key) {
      const image = await fetchAttachment(url, limits);
      await o.results.put(key, image.bytes);
    },
  };
}
