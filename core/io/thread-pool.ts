import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Piscina } from 'piscina';

/** Functions a task module offers the pool's threads, by name. */
// biome-ignore lint/suspicious/noExplicitAny: each task has its own arguments; the pool's run() types them per name
export type TaskTable = Record<string, (...args: any[]) => unknown>;

/** What a thread is sent: the task's name and its arguments (structured-cloned). */
interface TaskMessage {
  task: string;
  args: unknown[];
}

/**
 * Structured clone turns Buffers into plain Uint8Arrays: give them back their Buffer face (no copy),
 * in arguments, results and the plain objects and arrays that hold them.
 */
function revive<T>(value: T, depth = 0): T {
  if (value instanceof Uint8Array && !Buffer.isBuffer(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength) as T;
  if (depth > 3 || value === null || typeof value !== 'object' || Buffer.isBuffer(value)) return value;
  if (Array.isArray(value)) return value.map((v) => revive(v, depth + 1)) as T;
  if (Object.getPrototypeOf(value) !== Object.prototype) return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, revive(v, depth + 1)])) as T;
}

/** The default export of a task module: what each pool thread runs. */
export function serveTasks(tasks: TaskTable): (m: TaskMessage) => Promise<unknown> {
  return async ({ task, args }) => {
    const fn = tasks[task];
    if (!fn) throw new Error(`no task ${task}`);
    return fn(...revive(args));
  };
}

/** The same tasks run inline on the calling thread: for tests and callers without a pool. */
export function inlineTasks<T extends TaskTable>(tasks: T): Pick<ThreadPool<T>, 'run'> {
  return { run: async (task, ...args) => (await tasks[task]!(...args)) as never };
}

/** A task module next to `base` (an import.meta.url): `.ts` from source, `.js` once built. */
export function taskModule(relative: string, base: string): URL {
  return new URL(base.endsWith('.ts') ? relative.replace(/\.js$/, '.ts') : relative, base);
}

export interface ThreadPool<T extends TaskTable> {
  /** Runs `task` on a pool thread; resolves with its result (Buffers as Buffers). */
  run<K extends keyof T & string>(task: K, ...args: Parameters<T[K]>): Promise<Awaited<ReturnType<T[K]>>>;
  /** Threads busy or idle right now, and tasks waiting for one. */
  stats(): { threads: number; queued: number };
  close(): Promise<void>;
}

export interface ThreadPoolOptions {
  /** Most threads at once; 0 = one per core but one, at least 1 and at most 4. */
  threads?: number;
  /** Threads kept alive while idle (a thread holding a loaded model is worth keeping). */
  minThreads?: number;
  /** An idle thread beyond minThreads exits after this long. */
  idleTimeoutMs?: number;
}

/** Threads for a process on this machine: leave one core to the event loop and libuv. */
function defaultThreads(): number {
  return Math.max(1, Math.min(4, availableParallelism() - 1));
}

/**
 * A bounded pool of threads for CPU work that must not block a process's event loop (decoding,
 * compositing, classifying images), on piscina. Both processes build theirs from a task module:
 * the bot's image work (core/io/image-tasks.ts), the worker's adds classification. Tasks beyond
 * the threads wait in the pool's queue, so a burst costs latency, never the event loop.
 */
export function createThreadPool<T extends TaskTable>(module: URL, o: ThreadPoolOptions = {}): ThreadPool<T> {
  const max = o.threads && o.threads > 0 ? o.threads : defaultThreads();
  const fromSource = module.pathname.endsWith('.ts');
  // From source (tsx, tests), threads need the TypeScript loader the main thread was started with.
  const execArgv = fromSource
    ? [...process.execArgv, '--import', pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href]
    : process.execArgv;
  // piscina is loaded and the pool built on the first task: a bot that has not yet touched an image
  // holds neither (about 1 MB, most of it the timing histograms we never read, hence recordTiming off).
  let pool: Promise<Piscina> | undefined;
  let opened: Piscina | undefined;
  const open = () =>
    (pool ??= import('piscina').then(({ Piscina }) => {
      opened = new Piscina({
        filename: fileURLToPath(module),
        maxThreads: max,
        minThreads: Math.min(o.minThreads ?? 0, max),
        idleTimeout: o.idleTimeoutMs ?? 30_000,
        execArgv,
        recordTiming: false,
      });
      return opened;
    }));
  return {
    async run(task, ...args) {
      const message: TaskMessage = { task, args };
      return revive(await (await open()).run(message)) as never;
    },
    stats: () => ({ threads: opened?.threads.length ?? 0, queued: opened?.queueSize ?? 0 }),
    close: async () => (pool ? (await pool).destroy() : undefined),
  };
}
