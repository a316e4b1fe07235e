import type { PresetService } from '../commands/context.js';
import { UserError } from '../core/errors.js';
import { STATUS_STALE_MS } from '../core/eta.js';
import type { BackendStatus } from '../core/io/backend-status.js';
import { text } from '../core/messages.js';
import { offeredPresets } from '../core/overflow.js';
import type { PresetCatalog } from '../core/presets.js';

/** How long the live workers' presets are remembered between autocomplete keystrokes. */
const CACHE_MS = 5000;

/**
 * The presets members are offered: the bot's catalog (built-ins and PRESETS_FILE), narrowed to
 * those some live backend runs, as the workers' status reports say (a preset whose only backend
 * needs a checkpoint nobody named is not offered). With no fresh report to go by, every preset is
 * offered: a job then waits for a worker like any other.
 */
export function createPresetService(o: {
  catalog: PresetCatalog;
  readStatuses: () => Promise<BackendStatus[]>;
  now: () => number;
}): PresetService {
  let cache: { at: number; offered: ReadonlySet<string> | null } | undefined;
  async function offered(): Promise<ReadonlySet<string> | null> {
    const now = o.now();
    if (cache && now - cache.at < CACHE_MS) return cache.offered;
    const statuses = await o.readStatuses().catch(() => []);
    cache = { at: now, offered: offeredPresets(statuses, now, STATUS_STALE_MS) };
    return cache.offered;
  }
  return {
    catalog: o.catalog,
    async choices(query) {
      return o.catalog.choices(query, (await offered()) ?? undefined);
    },
    async check(presetId) {
      const off = await offered();
      if (off && !off.has(presetId)) {
        const available = o.catalog.list.filter((p) => off.has(p.id)).map((p) => p.id);
        throw new UserError('invalid_option', text.presetUnavailable(presetId, available));
      }
    },
  };
}
