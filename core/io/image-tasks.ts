import { fitForUpload } from './fit-upload.js';
import { makeGrid } from './grid.js';
import { pasteBack, prepareInpaint } from './inpaint-image.js';
import { serveTasks } from './thread-pool.js';

/**
 * Image work both processes run on their thread pool (core/io/thread-pool.ts), off the event loop:
 * fitting a result under the upload limit and the grid (bot), the inpaint paste-back and the grid
 * (worker), preparing an /inpaint upload (bot).
 */
export const imageTasks = { fitForUpload, makeGrid, pasteBack, prepareInpaint };
export type ImageTasks = typeof imageTasks;

export default serveTasks(imageTasks);
