import type { Redis } from 'ioredis';
import type { Reports } from '../commands/context.js';
import { readBackendStatus } from '../core/io/backend-status.js';
import type { GenerateQueue } from '../core/io/queue.js';
import type { StatsStore } from './store/stats.js';

/** What `/admin stats` and `/admin backends` read: Postgres aggregates, the workers' reports in Redis, the queue's counts. */
export function createReports(o: {
  stats: Pick<StatsStore, 'guild' | 'backends'>;
  redis: Redis;
  prefix: string;
  queue: Pick<GenerateQueue, 'getJobCounts'>;
}): Reports {
  return {
    guild: (guildId, since) => o.stats.guild(guildId, since),
    async chart(stats) {
      // Drawn by libvips, loaded with the first /admin stats rather than at start.
      const { renderStatsChart } = await import('../core/io/stats-chart.js');
      return renderStatsChart(stats.byDay, stats.byBackend);
    },
    async backends(since) {
      const [statuses, latency, counts] = await Promise.all([
        readBackendStatus(o.redis, o.prefix),
        o.stats.backends(since),
        o.queue.getJobCounts('waiting', 'prioritized', 'active', 'delayed'),
      ]);
      return { statuses, latency, counts };
    },
  };
}
