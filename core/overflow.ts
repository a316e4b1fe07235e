import { type BackendFamily, isBoxFamily } from './backend-families.js';
import { type DurationSample, estimateStart } from './eta.js';

/**
 * Where a job goes when the GPU boxes are busy: the overflow rule the worker applies while a job
 * waits for a box, and the preview of it the bot shows before the job runs. Pure.
 */

/** The boxes' line as one waiting job sees it. */
export interface BoxLine {
  /** Jobs ahead of it that can use one of its boxes. */
  ahead: number;
  /** Its boxes whose circuit is closed. */
  usable: number;
  /** How long each busy box has been running its job. */
  busyElapsedMs: readonly number[];
  /** Recent run times on boxes (every worker's). */
  samples: readonly DurationSample[];
}

/** When the job should get a box, in ms from now: the expected wait and a range around it. */
export interface BoxWait {
  meanMs: number;
  lowMs: number;
  highMs: number;
}

/** Half-width of the range in standard deviations (about 80 %), as the queue ETA uses. */
const Z = 1.28;

/**
 * How long the job should wait for a box, from the line ahead, the box slots and recent run times;
 * null when no box is usable or no run time is known (then nothing honest can be said, and nothing
 * is spent on a guess).
 */
export function boxWait(l: BoxLine): BoxWait | null {
  if (!(l.usable >= 1)) return null;
  const start = estimateStart({
    ahead: l.ahead,
    running: l.busyElapsedMs.length,
    runningElapsedMs: l.busyElapsedMs,
    slots: l.usable,
    samples: l.samples,
  });
  if (!start) return null;
  const spread = Z * Math.sqrt(start.varMs2);
  return { meanMs: start.meanMs, lowMs: Math.max(0, start.meanMs - spread), highMs: start.meanMs + spread };
}

/**
 * Rule: a waiting job goes to the first paid provider in BACKENDS order instead of waiting when its
 * expected wait for a box is longer than OVERFLOW_AFTER_S (0 turns overflow off: only a failing box
 * sends jobs to the cloud), a provider can take it and the guild's budget allows it. The wait is
 * counted from now: time already spent waiting is gone either way, and paying is worth it only for
 * the time it still saves.
 */
export function shouldOverflow(o: {
  expectedWaitMs: number | null;
  overflowAfterS: number;
  cloudAvailable: boolean;
  budgetAllows: boolean;
}): boolean {
  if (o.overflowAfterS <= 0 || !o.cloudAvailable || !o.budgetAllows || o.expectedWaitMs === null) return false;
  return o.expectedWaitMs > o.overflowAfterS * 1000;
}

/** What the bot needs of a worker's backend report to preview a job's route. */
export interface RouteReport {
  worker: string;
  backend: string;
  family: BackendFamily;
  healthy: boolean;
  circuit: string;
  paid: boolean;
  at: number;
  /** Position in that worker's BACKENDS. */
  order?: number;
  /** Presets the backend runs, with an estimate of dollars per image (absent: reports of older workers, which run every preset). */
  presets?: Readonly<Record<string, number>>;
  /** The worker's OVERFLOW_AFTER_S. */
  overflowAfterS?: number;
}

/** Where a job may run, as far as the live workers' reports tell. */
export interface RoutePreview {
  /** A GPU box can run it. */
  box: boolean;
  /** The paid provider it may go to, about what it would cost, and when it would. */
  paid?: { backend: string; usd: number; when: 'always' | 'overflow' | 'failover'; overflowAfterS: number };
}

/** Presets some fresh, healthy backend runs (the ones autocomplete offers); null when no worker reports presets yet. */
export function offeredPresets(reports: readonly RouteReport[], now: number, staleMs: number): Set<string> | null {
  const fresh = reports.filter((r) => now - r.at < staleMs && r.healthy && r.circuit !== 'open');
  if (fresh.length === 0 || fresh.some((r) => r.presets === undefined)) return null;
  return new Set(fresh.flatMap((r) => Object.keys(r.presets ?? {})));
}

/**
 * The route a job with this preset should take: on a box if one can run it; and the first paid
 * provider (in BACKENDS order) that could take it, with its price for `count` images, when the
 * guild's budget allows paid providers at all.
 */
export function previewRoute(
  reports: readonly RouteReport[],
  o: { preset: string; count: number; paidAllowed: boolean; now: number; staleMs: number },
): RoutePreview {
  const usable = reports.filter(
    (r) => o.now - r.at < o.staleMs && r.healthy && r.circuit !== 'open' && (r.presets === undefined || o.preset in r.presets),
  );
  const box = usable.some((r) => isBoxFamily(r.family));
  if (!o.paidAllowed) return { box };
  const paid = usable.filter((r) => r.paid).sort((a, b) => (a.order ?? 99) - (b.order ?? 99))[0];
  if (!paid) return { box };
  const overflowAfterS = Math.max(0, ...usable.map((r) => r.overflowAfterS ?? 0));
  const usdPerImage = paid.presets?.[o.preset];
  return {
    box,
    paid: {
      backend: paid.backend,
      usd: (usdPerImage ?? 0) * o.count,
      when: !box ? 'always' : overflowAfterS > 0 ? 'overflow' : 'failover',
      overflowAfterS,
    },
  };
}
