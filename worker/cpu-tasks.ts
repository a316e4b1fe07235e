import { imageTasks } from '../core/io/image-tasks.js';
import { serveTasks } from '../core/io/thread-pool.js';
import { loadNsfwClassifier } from './safety/classifier.js';

/**
 * The worker's CPU work, run on its thread pool: the image tasks both processes share, and the NSFW
 * classifier (each thread loads the model once; on TensorFlow.js's CPU fallback one image takes
 * about a second of solid computation, which would otherwise stall the job's lock renewal).
 */
export const workerTasks = {
  ...imageTasks,
  classify: async (png: Buffer, backend: 'auto' | 'cpu') => (await loadNsfwClassifier(backend)).classify(png),
  /** Loads the model in the thread that runs it; returns the TensorFlow.js backend in use. */
  loadClassifier: async (backend: 'auto' | 'cpu') => (await loadNsfwClassifier(backend)).backend,
};
export type WorkerTasks = typeof workerTasks;

export default serveTasks(workerTasks);
