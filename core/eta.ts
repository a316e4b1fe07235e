/**
 * Queue ETA: when a waiting job's images should be ready, as a range, from what the queue and the
 * workers look like now and how long recent jobs took. Pure; the bot feeds it one snapshot at a time.
 */

/** One finished job: how long its worker spent on it, how many images it made, on which backend. */
export interface DurationSample {
  ms: number;
  count: number;
  backend?: string;
}

export interface EtaInput {
  /** Jobs that will start before this one. */
  ahead: number;
  /** Jobs running now. */
  running: number;
  /** How long running jobs have been at it, for those whose start was seen (may list fewer than `running`). */
  runningElapsedMs?: readonly number[];
  /** Jobs the live workers can run at once. */
  slots: number;
  /** Recent finished jobs. */
  samples: readonly DurationSample[];
  /** Images this job makes. */
  count: number;
}

/** Milliseconds from now until the images should be ready: most likely between low and high. */
export interface Eta {
  lowMs: number;
  highMs: number;
}

/** Half-width of the range in standard deviations: about an 80 % interval if durations were normal. */
const Z = 1.28;

function mean(xs: readonly number[]): number {
  return xs.reduce((s, x) => s + x, 0) / xs.length;
}

function sd(xs: readonly number[], m: number): number {
  if (xs.length < 2) return 0;
  return Math.sqrt(xs.reduce((s, x) => s + (x - m) ** 2, 0) / (xs.length - 1));
}

/** When a waiting job should start (ms from now): the mean and its variance. */
export interface StartEstimate {
  meanMs: number;
  varMs2: number;
}

interface Stats {
  samples: DurationSample[];
  /** Mean job time, mean time per image, and their spreads. */
  m: number;
  pi: number;
  sJob: number;
  sImg: number;
  perImage: number[];
}

function statsOf(all: readonly DurationSample[]): Stats | null {
  const samples = all.filter((s) => Number.isFinite(s.ms) && s.ms >= 0 && s.count >= 1);
  if (samples.length === 0) return null;
  const n = samples.length;
  const jobMs = samples.map((s) => s.ms);
  const perImage = samples.map((s) => s.ms / s.count);
  const m = mean(jobMs);
  const pi = mean(perImage);
  // A handful of samples says little about the spread: never claim less than this relative spread.
  const cvFloor = n >= 5 ? 0.1 : 0.25;
  return { samples, m, pi, sJob: Math.max(sd(jobMs, m), cvFloor * m), sImg: Math.max(sd(perImage, pi), cvFloor * pi), perImage };
}

function startOf(input: Omit<EtaInput, 'count'>, st: Stats): StartEstimate {
  const { m, sJob } = st;
  const n = st.samples.length;
  const ahead = Math.max(0, Math.floor(input.ahead));
  const running = Math.max(0, Math.floor(input.running));
  // More jobs running than slots reported: reports lag (a worker just started), trust the queue.
  const slots = Math.max(Math.floor(input.slots), running);
  const elapsed = (input.runningElapsedMs ?? []).slice(0, running);

  // [time the slot frees up, variance of that time]
  const free: [number, number][] = [];
  for (const e of elapsed) {
    // A job past the usual duration still has a little left, not none.
    free.push([Math.max(m - e, 0.1 * m), sJob ** 2]);
  }
  for (let k = elapsed.length; k < running; k++) free.push([m / 2, m ** 2 / 12]);
  while (free.length < slots) free.push([0, 0]);
  free.sort((a, b) => a[0] - b[0]);

  const rounds = Math.floor(ahead / slots);
  const [slotFree, slotVar] = free[ahead % slots]!;
  return { meanMs: slotFree + rounds * m, varMs2: slotVar + rounds * sJob ** 2 + (rounds * sJob) ** 2 / n };
}

/**
 * When a waiting job should start, or null with no finished job to learn from or no slot: the
 * first half of {@link estimateEta}'s model (the expected wait an overflow decision weighs).
 */
export function estimateStart(input: Omit<EtaInput, 'count'>): StartEstimate | null {
  const st = statsOf(input.samples);
  if (!st || !(input.slots >= 1)) return null;
  return startOf(input, st);
}

/** Why there is no range, so the member is told the true cause: no live worker slot, or no finished job to learn from. */
export type NoEta = 'no-worker' | 'no-runs';

/**
 * The range, or why there is nothing honest to say: no live worker slot (checked first: the job
 * will not move until one is back, whatever the run times), or no finished job to learn from.
 *
 * Model: every slot frees up when its running job ends (the job's expected remaining time; half a
 * job when its start was not seen), idle slots are free now. The jobs ahead, all alike on average,
 * take the earliest free slot in turn, so with durations of mean m this job starts at
 * free[ahead mod S] + floor(ahead / S) * m, then runs for its own count of images. The spread
 * adds the variance of the jobs in its slot's line, of the unknown residual, of its own run, and
 * the error of m itself, which grows with the queue: on a long queue that error dominates.
 */
export function estimateEta(input: EtaInput): Eta | NoEta {
  if (!(input.slots >= 1)) return 'no-worker';
  const st = statsOf(input.samples);
  if (!st) return 'no-runs';
  const start = startOf(input, st);
  const n = st.samples.length;
  const ownMean = st.pi * input.count;
  const varOwn = (st.sImg * input.count) ** 2 * (1 + 1 / n);
  const total = start.meanMs + ownMean;
  const spread = Z * Math.sqrt(start.varMs2 + varOwn);
  // Faster than the fastest image ever seen is not on offer.
  const floor = Math.min(...st.perImage) * input.count;
  return { lowMs: Math.max(floor, total - spread), highMs: Math.max(floor, total + spread) };
}

/** Worker reports older than this are stale (the worker may be gone): they count no slots and show as stale. */
export const STATUS_STALE_MS = 60_000;

/** Minimal shape of a worker's backend report (see core/io/backend-status.ts). */
export interface SlotReport {
  worker: string;
  backend: string;
  healthy: boolean;
  circuit: string;
  at: number;
  /** Absent from workers older than this field: they run one job at a time by default. */
  concurrency?: number;
  /** A GPU box's identity: the same box reported by several workers is one slot. */
  box?: string;
}

/** Freshly reported, healthy and not open-circuited: a backend jobs can run on now. */
function usable(reports: readonly SlotReport[], now: number, staleMs: number): SlotReport[] {
  return reports.filter((r) => now - r.at < staleMs && r.healthy && r.circuit !== 'open');
}

/** Jobs the live workers can run at once: each worker with a usable backend counts its concurrency once. */
export function liveSlots(reports: readonly SlotReport[], now: number, staleMs: number): number {
  const byWorker = new Map<string, number>();
  for (const r of usable(reports, now, staleMs)) {
    byWorker.set(r.worker, Math.max(byWorker.get(r.worker) ?? 0, r.concurrency ?? 1));
  }
  let total = 0;
  for (const c of byWorker.values()) total += c;
  return total;
}

/** GPU boxes jobs can run on now: one slot each, however many workers report the same box. */
export function boxSlots(reports: readonly SlotReport[], now: number, staleMs: number): number {
  return new Set(usable(reports, now, staleMs).flatMap((r) => (r.box ? [r.box] : []))).size;
}

/**
 * Samples from the backends jobs would run on now (healthy, circuit not open, freshly reported):
 * when the box is down and the cloud takes over, the box's times say nothing. Falls back to every
 * sample when none matches (a rough figure from another backend rather than none at all).
 */
export function samplesInUse(
  samples: readonly DurationSample[],
  reports: readonly SlotReport[],
  now: number,
  staleMs: number,
): readonly DurationSample[] {
  const inUse = new Set(usable(reports, now, staleMs).map((r) => r.backend));
  const matching = samples.filter((s) => s.backend !== undefined && inUse.has(s.backend));
  return matching.length > 0 ? matching : samples;
}

/** The last `capacity` finished jobs, newest first; seeded from the database at start. */
export class DurationWindow {
  private readonly items: DurationSample[] = [];

  constructor(readonly capacity = 30) {}

  /** A job just finished. */
  add(s: DurationSample): void {
    this.items.unshift(s);
    if (this.items.length > this.capacity) this.items.length = this.capacity;
  }

  /** Older jobs (newest first), kept only where the window has room behind what it saw live. */
  seed(older: readonly DurationSample[]): void {
    for (const s of older) {
      if (this.items.length >= this.capacity) break;
      this.items.push(s);
    }
  }

  samples(): readonly DurationSample[] {
    return this.items;
  }
}
