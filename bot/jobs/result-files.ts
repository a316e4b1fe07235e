import type { RawFile } from 'discord.js';
import type { JobResult } from '../../core/generation.js';
import { checkOutputImage, refusedOutputImage } from '../../core/io/image-sniff.js';
import type { ImageTasks } from '../../core/io/image-tasks.js';
import type { ResultStore } from '../../core/io/results.js';
import type { ThreadPool } from '../../core/io/thread-pool.js';
import type { StoredJob } from '../../core/ports.js';
import { DEFAULT_UPLOAD_LIMIT_BYTES, planMessages } from '../../core/upload-plan.js';
import { type MessageBody, type ResultPart, resultBody, resultMoreBody } from './render.js';

/** One Discord message of a result: its JSON body and its files. */
export interface OutgoingMessage {
  body: MessageBody;
  files: RawFile[];
}

/**
 * The result as Discord will take it: each image fitted under the channel's upload limit, a
 * numbered grid in front when there are several, and the files split over as many messages as
 * the limit requires (the first one carries the grid, the embed and the job's buttons). Images the
 * output limits refuse by their headers are refused here (thrown) before anything decodes them; a
 * worker's grid they refuse is made anew from the images.
 */
export async function composeResult(
  job: StoredJob,
  result: JobResult,
  imgs: Buffer[],
  o: { results: Pick<ResultStore, 'get'>; now: () => number; cpu: Pick<ThreadPool<ImageTasks>, 'run'> },
): Promise<OutgoingMessage[]> {
  const refused = refusedOutputImage(imgs);
  if (refused) throw new Error(`result refused: ${refused}`);
  const limit = job.interaction.uploadLimitBytes ?? DEFAULT_UPLOAD_LIMIT_BYTES;
  // Re-encoding (only for an image over the limit) and gridding run on the bot's thread pool.
  const fitFile = (data: Buffer, name: string, format: 'png' | 'webp' = 'png') =>
    data.length <= limit
      ? { name: `${name}.${format}`, data, contentType: `image/${format}` }
      : o.cpu.run('fitForUpload', data, limit, name, format);
  const fitted = await Promise.all(imgs.map((data, i) => fitFile(data, `image-${i + 1}`)));
  const files: { file: RawFile; index: number | null }[] = fitted.map((f, index) => ({
    file: { name: f.name, data: f.data, contentType: f.contentType },
    index,
  }));
  if (imgs.length > 1) {
    // The worker makes the grid; results from a worker that did not are gridded here.
    const made = result.gridKey ? await o.results.get(result.gridKey) : null;
    const usable = made && !('refused' in checkOutputImage(made, 1)) ? made : null;
    const grid = await fitFile(usable ?? (await o.cpu.run('makeGrid', imgs)), 'grid', 'webp');
    files.unshift({ file: { name: grid.name, data: grid.data, contentType: grid.contentType }, index: null });
  }
  const plan = planMessages(
    files.map((f) => (f.file.data as Buffer).length),
    limit,
  );
  const totalMs = (job.finishedAt?.getTime() ?? o.now()) - job.createdAt.getTime();
  return plan.map((ids, n) => {
    const entries = ids.map((i) => files[i]!);
    const part: ResultPart = {
      filenames: entries.map((e) => e.file.name),
      images: entries.flatMap((e) => (e.index === null ? [] : [{ index: e.index, filename: e.file.name }])),
      ...(entries[0]?.index === null ? { grid: entries[0].file.name } : {}),
    };
    const body = n === 0 ? resultBody(job.id, job.request, result, part, totalMs) : resultMoreBody(job.id, job.request, result, part);
    return { body, files: entries.map((e) => e.file) };
  });
}
