import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** Prometheus metrics of one process (bot or worker), exposed on /metrics. */
export function createMetrics(service: 'bot' | 'worker', labels: Record<string, string> = {}) {
  const registry = new Registry();
  // A guild's own worker labels everything it exposes with its guild.
  registry.setDefaultLabels({ service, ...labels });
  collectDefaultMetrics({ register: registry });
  const m = {
    registry,
    queueJobs: new Gauge({
      name: 'imagebot_queue_jobs',
      help: "Jobs in the generate queues by state and key space (shared, or a guild's own)",
      labelNames: ['state', 'space'],
      registers: [registry],
    }),
    jobDuration: new Histogram({
      name: 'imagebot_job_duration_seconds',
      help: 'Time a backend took for a job, by backend and kind',
      labelNames: ['backend', 'kind'],
      buckets: [0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300],
      registers: [registry],
    }),
    jobFailures: new Counter({
      name: 'imagebot_job_failures_total',
      help: 'Failed backend attempts by backend and error kind',
      labelNames: ['backend', 'kind'],
      registers: [registry],
    }),
    circuitOpen: new Gauge({
      name: 'imagebot_circuit_open',
      help: '1 when a backend circuit is open (or half-open)',
      labelNames: ['backend'],
      registers: [registry],
    }),
    costUsd: new Counter({
      name: 'imagebot_cost_usd_total',
      help: 'Dollars spent by backend',
      labelNames: ['backend'],
      registers: [registry],
    }),
    jobsSettled: new Counter({
      name: 'imagebot_jobs_settled_total',
      help: 'Jobs settled by outcome',
      labelNames: ['status'],
      registers: [registry],
    }),
    ackLatency: new Histogram({
      name: 'imagebot_interaction_ack_seconds',
      help: 'Time from receiving an interaction to acknowledging it',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3],
      registers: [registry],
    }),
    jobsRouted: new Counter({
      name: 'imagebot_jobs_routed_total',
      help: 'Jobs that ran elsewhere than the GPU box they were meant for: overflow (box busy) or failover (box failing), by backend',
      labelNames: ['reason', 'backend'],
      registers: [registry],
    }),
    ownBoxes: new Gauge({
      name: 'imagebot_guild_boxes_online',
      help: "A guild's own GPU boxes reporting in (healthy, circuit not open), by guild",
      labelNames: ['guild'],
      registers: [registry],
    }),
    jobsBySpace: new Counter({
      name: 'imagebot_jobs_queued_total',
      help: 'Jobs queued by guild and where: its own boxes (own), the shared queue (shared), or handed from its own boxes to the shared queue (handoff)',
      labelNames: ['guild', 'to'],
      registers: [registry],
    }),
    discordRateLimits: new Counter({
      name: 'imagebot_discord_rate_limits_total',
      help: 'Discord 429 responses',
      labelNames: ['route'],
      registers: [registry],
    }),
  };
  return m;
}
export type Metrics = ReturnType<typeof createMetrics>;
