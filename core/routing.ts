import { type BackendFamily, isBoxFamily } from './backend-families.js';
import type { DurationSample } from './eta.js';
import { boxWait } from './overflow.js';

/**
 * Where an admitted job is queued: the guild's own key space (its linked GPU boxes) or the shared
 * queue (the operator's boxes, if the operator allows the guild, then the cloud within its budget).
 * Pure; the bot feeds it the guild workers' status reports and the guild queue's length.
 */

/** A guild worker's status report, as far as routing needs it (core/io/backend-status.ts). */
export interface OwnBoxReport {
  family: BackendFamily;
  healthy: boolean;
  circuit: string;
  at: number;
  box?: string;
  inFlight: number;
}

/**
 * How long a guild's box may go without a status report before it counts as gone: its worker
 * reports every {@link GUILD_HEARTBEAT_MS}, so three reports missed.
 */
export const GUILD_HEARTBEAT_MS = 2000;
export const OWN_BOX_STALE_MS = 3 * GUILD_HEARTBEAT_MS;

/** The guild's boxes that can take a job now: reported within the stale window, healthy, circuit not open. */
export function onlineOwnBoxes(reports: readonly OwnBoxReport[], now: number, staleMs = OWN_BOX_STALE_MS): number {
  const boxes = new Set<string>();
  for (const r of reports) {
    if (!isBoxFamily(r.family) || now - r.at >= staleMs || !r.healthy || r.circuit === 'open') continue;
    boxes.add(r.box ?? `${r.family}@${r.at}`);
  }
  return boxes.size;
}

export type JobRoute = { to: 'guild'; expectedWaitMs: number | null } | { to: 'shared'; why: 'no_own_box' | 'own_box_busy' };

/**
 * Rule: a guild's job goes to its own boxes when one is online and the expected wait there (the
 * guild queue ahead of it times recent run times, as core/overflow.ts estimates a box's line) is
 * within OVERFLOW_AFTER_S; an unknown wait (no run time seen yet) counts as within. Otherwise the
 * shared queue. OVERFLOW_AFTER_S 0 means never overflow: the own box keeps its guild's jobs.
 */
export function routeJob(o: {
  reports: readonly OwnBoxReport[];
  now: number;
  /** The guild queue's jobs waiting and running. */
  waiting: number;
  running: number;
  samples: readonly DurationSample[];
  overflowAfterS: number;
  staleMs?: number;
}): JobRoute {
  const usable = onlineOwnBoxes(o.reports, o.now, o.staleMs);
  if (usable === 0) return { to: 'shared', why: 'no_own_box' };
  const wait = boxWait({
    ahead: o.waiting,
    usable,
    busyElapsedMs: Array.from({ length: Math.min(o.running, usable) }, () => 0),
    samples: o.samples,
  });
  const expectedWaitMs = wait?.meanMs ?? null;
  if (o.overflowAfterS > 0 && expectedWaitMs !== null && expectedWaitMs > o.overflowAfterS * 1000)
    return { to: 'shared', why: 'own_box_busy' };
  return { to: 'guild', expectedWaitMs };
}

/** Rule: the operator's own boxes serve a guild's jobs on the shared queue when SHARED_BOX_GUILDS is `*` or lists it. */
export function sharedBoxesAllowed(allowed: '*' | readonly string[], guildId: string): boolean {
  return allowed === '*' || allowed.includes(guildId);
}
