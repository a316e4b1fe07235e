import type { Redis } from 'ioredis';
import { guildSpace } from '../../core/config.js';
import type { DurationSample } from '../../core/eta.js';
import type { JobPayload } from '../../core/generation.js';
import { readBackendStatus } from '../../core/io/backend-status.js';
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

/**
 * Queues an admitted job where core/routing.ts says: its guild's own boxes (a fresh, healthy status
 * report under the guild's key space and a short enough line there), else the shared queue. A job
 * with input images going to the guild's boxes has its inputs copied into the guild's key space,
 * the only keys its worker can read.
 */
export function createAdmissionRoute(o: AdmissionRouteOptions) {
  return async (payload: JobPayload, usedBefore: number): Promise<'own' | 'shared'> => {
    const guildId = payload.guildId;
    if (guildId !== null) {
      const space = guildSpace(o.prefix, guildId);
      const reports = await readBackendStatus(o.redis, space);
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
          await o.spaces.addOwn(await intoSpace(o.redis, payload, o.prefix, space), guildId, usedBefore);
          o.onRouted?.(guildId, 'own');
          return 'own';
        }
        o.log.debug({ jobId: payload.jobId, guildId, why: route.why }, "not on the guild's own boxes");
      }
    }
    await o.spaces.addShared(payload, usedBefore);
    if (guildId !== null) o.onRouted?.(guildId, 'shared');
    return 'shared';
  };
}

/** The payload with its input images copied under the guild's key space. */
async function intoSpace(redis: Redis, payload: JobPayload, prefix: string, space: string): Promise<JobPayload> {
  const keys = payload.request.inputKeys;
  if (!keys) return payload;
  const moved: Record<string, string> = {};
  for (const [name, key] of Object.entries(keys)) {
    if (typeof key !== 'string') continue;
    const target = key.startsWith(`${prefix}:`) ? `${space}:${key.slice(prefix.length + 1)}` : key;
    if (target !== key) await redis.copy(key, target, 'REPLACE');
    moved[name] = target;
  }
  return { ...payload, request: { ...payload.request, inputKeys: moved as typeof keys } };
}
