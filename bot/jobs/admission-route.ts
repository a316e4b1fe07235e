import type { Redis } from 'ioredis';
import { guildSpace, keyInGuildSpace } from '../../core/config.js';
import type { DurationSample } from '../../core/eta.js';
import type { JobPayload } from '../../core/generation.js';
import { type BackendStatus, readBackendStatus } from '../../core/io/backend-status.js';
import type { Logger } from '../../core/io/logger.js';
import { routeJob } from '../../core/routing.js';
import type { KeySpaces } from './spaces.js';

export interface AdmissionRouteOptions {
  spaces: KeySpaces;
  redis: Redis;
  prefix: string;
  overflowAfterS: number;
  samples: () => readonly DurationSample[];
  now: () => number;
  log: Logger;
  onRouted?: (guildId: string, to: 'own' | 'shared') => void;
}

/** How old a status read started at admission may be when the job is queued. */
const EARLY_STATUS_MAX_AGE_MS = 1000;
/** A read started this recently serves the guild's next admissions too: a burst costs one read, not one per job. */
const EARLY_STATUS_SHARED_MS = 250;
/** Most guilds whose latest admission-time status read is kept (the oldest go first). */
const EARLY_STATUS_MAX_GUILDS = 1000;

export interface AdmissionRoute {
  /** Queues an admitted job; `usedBefore` is the member's images of the last 24 hours before it (core/quota.ts). */
  route(payload: JobPayload, usedBefore: number): Promise<'own' | 'shared'>;
  /**
   * Starts reading the guild's own boxes' status at admission, beside the quota statement, so the
   * queueing after the acknowledgement does not wait for that round trip.
   */
  prefetch(guildId: string): void;
}

/**
 * Queues an admitted job where core/routing.ts says: its guild's own boxes (a fresh, healthy status
 * report under the guild's key space and a short enough line there), else the shared queue. A job
 * with input images going to the guild's boxes has its inputs copied into the guild's key space,
 * the only keys its worker can read, and the originals dropped once it is queued there.
 */
export function createAdmissionRoute(o: AdmissionRouteOptions): AdmissionRoute {
  /** Status reads started at admission, by guild: the queueing after the acknowledgement finds them done. */
  const early = new Map<string, { at: number; reports: Promise<BackendStatus[]> }>();
  const statusOf = (space: string, guildId: string): Promise<BackendStatus[]> => {
    const got = early.get(guildId);
    // A read older than this is made again: a linked box may have come or gone meanwhile.
    if (got && o.now() - got.at <= EARLY_STATUS_MAX_AGE_MS) return got.reports.catch(() => readBackendStatus(o.redis, space));
    return readBackendStatus(o.redis, space);
  };
  const prefetch = (guildId: string): void => {
    const got = early.get(guildId);
    if (got && o.now() - got.at < EARLY_STATUS_SHARED_MS) return;
    const reports = readBackendStatus(o.redis, guildSpace(o.prefix, guildId));
    reports.catch(() => undefined); // read again when queueing
    early.delete(guildId);
    early.set(guildId, { at: o.now(), reports });
    if (early.size > EARLY_STATUS_MAX_GUILDS) early.delete(early.keys().next().value!);
  };
  const route = async (payload: JobPayload, usedBefore: number): Promise<'own' | 'shared'> => {
    const guildId = payload.guildId;
    if (guildId !== null) {
      const space = guildSpace(o.prefix, guildId);
      const reports = await statusOf(space, guildId);
      if (reports.length > 0) {
        const own = await o.spaces.guild(guildId);
        const counts = await own.queue.getJobCounts('waiting', 'prioritized', 'active');
        const route = routeJob({
          reports,
          now: o.now(),
          waiting: (counts.waiting ?? 0) + (counts.prioritized ?? 0),
          running: counts.active ?? 0,
          samples: o.samples(),
          overflowAfterS: o.overflowAfterS,
        });
        if (route.to === 'guild') {
          const moved = await intoSpace(o.redis, payload, o.prefix, guildId);
          await o.spaces.addOwn(moved.payload, guildId, usedBefore);
          // Its worker reads the copies; the originals would wait out RESULT_TTL_SECONDS for nothing.
          if (moved.copied.length > 0)
            await o.redis
              .unlink(...moved.copied)
              .catch((err: unknown) => o.log.warn({ err, jobId: payload.jobId }, 'could not drop copied inputs; they go at delivery'));
          o.onRouted?.(guildId, 'own');
          return 'own';
        }
        o.log.debug({ jobId: payload.jobId, guildId, why: route.why }, "not on the guild's own boxes");
      }
    }
    await o.spaces.addShared(payload, usedBefore, { fresh: true });
    if (guildId !== null) o.onRouted?.(guildId, 'shared');
    return 'shared';
  };
  return { route, prefetch };
}

/** The payload with its input images copied under the guild's key space, and the keys copied from. */
async function intoSpace(
  redis: Redis,
  payload: JobPayload,
  prefix: string,
  guildId: string,
): Promise<{ payload: JobPayload; copied: string[] }> {
  const keys = payload.request.inputKeys;
  if (!keys) return { payload, copied: [] };
  const moved: Record<string, string> = {};
  const copied: string[] = [];
  for (const [name, key] of Object.entries(keys)) {
    if (typeof key !== 'string') continue;
    const target = keyInGuildSpace(key, prefix, guildId);
    if (target !== key) {
      await redis.copy(key, target, 'REPLACE');
      copied.push(key);
    }
    moved[name] = target;
  }
  return { payload: { ...payload, request: { ...payload.request, inputKeys: moved as typeof keys } }, copied };
}
