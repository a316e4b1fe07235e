import { performance } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Hands back to the system the memory a busy spell (or start-up) used and no longer needs, with one
 * memory-reducing garbage collection. Loading the libraries (discord.js, BullMQ, zod) or a burst of
 * jobs grows V8's heap, and with no traffic V8 never collects again: an idle process would keep
 * that empty heap for good (~30 MB after start-up, 200+ MB after a burst of a thousand jobs).
 * Traffic grows the heap back as far as it needs. Takes ~0.1–0.3 s of the main thread.
 */
export function releaseMemory(): void {
  try {
    // The documented way to reach V8's collector without starting the process with --expose-gc.
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as (options: { type: 'major'; flavor: 'last-resort' }) => void;
    setFlagsFromString('--no-expose-gc');
    // 'last-resort' collects with V8's reduce-memory flag, which also shrinks the young generation.
    gc({ type: 'major', flavor: 'last-resort' });
  } catch {
    // Only a saving: a runtime without the hook keeps its memory, and the process runs on.
  }
}

/** How busy the event loop was over a window: 0 idle, 1 never idle. */
export type LoopUse = () => number;

/** The event loop's use since the last call (Node's eventLoopUtilization). */
function loopUse(): LoopUse {
  let last = performance.eventLoopUtilization();
  return () => {
    const now = performance.eventLoopUtilization();
    const used = performance.eventLoopUtilization(now, last).utilization;
    last = now;
    return used;
  };
}

/**
 * Releases memory once the process goes quiet after a busy spell: every `everyMs` it looks at how
 * busy the loop was; a window above `busyAbove` marks a spell, the first quiet window after one
 * releases. A trickle of jobs (a few ms of work a window) is never a spell, so it never pays the pause.
 */
export function releaseMemoryWhenQuiet(o: { everyMs?: number; busyAbove?: number; use?: LoopUse; release?: () => void } = {}): {
  check(): void;
  stop(): void;
} {
  const use = o.use ?? loopUse();
  const release = o.release ?? releaseMemory;
  const busyAbove = o.busyAbove ?? 0.01;
  let spell = false;
  const check = () => {
    if (use() > busyAbove) spell = true;
    else if (spell) {
      spell = false;
      release();
    }
  };
  const timer = setInterval(check, o.everyMs ?? 10_000);
  timer.unref();
  return { check, stop: () => clearInterval(timer) };
}
