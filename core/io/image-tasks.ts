import { isUserError } from '../errors.js';
import { fitForUpload } from './fit-upload.js';
import { makeGrid } from './grid.js';
import { type PreparedInpaint, pasteBack, prepareInpaint } from './inpaint-image.js';
import { serveTasks } from './thread-pool.js';

/**
 * prepareInpaint for a pool thread: a refusal comes back as its member-facing text, since an error
 * crossing threads keeps its message but not its class.
 */
async function prepareUpload(...args: Parameters<typeof prepareInpaint>): Promise<{ prepared: PreparedInpaint } | { refused: string }> {
  try {
    return { prepared: await prepareInpaint(...args) };
  } catch (err) {
    if (isUserError(err)) return { refused: err.userMessage };
    throw err;
  }
}

/**
 * Image work both processes run on their thread pool (core/io/thread-pool.ts), off the event loop:
 * fitting a result under the upload limit and the grid (bot), the inpaint paste-back and the grid
 * (worker), preparing an /inpaint upload (bot).
 */
export const imageTasks = { fitForUpload, makeGrid, pasteBack, prepareUpload };
export type ImageTasks = typeof imageTasks;

export default serveTasks(imageTasks);
