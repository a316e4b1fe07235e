import { createRequire } from 'node:module';
import type { Queue as BullQueue, QueueEvents as BullQueueEvents, JobsOptions, QueueOptions } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import type { JobKind, JobPayload, JobResult } from '../generation.js';

/*
 * BullMQ's two classes the bot uses, each from its own file: the package's index also loads the
 * Worker, flows, the PostgreSQL backend and OpenTelemetry, some 2 MB the bot would hold and never
 * run. The package has no exports map and its version is pinned; a moved file fails at start.
 */
const requireBullmq = createRequire(import.meta.url);
const { Queue } = requireBullmq('bullmq/dist/cjs/classes/queue.js') as { Queue: typeof BullQueue };
export const { QueueEvents } = requireBullmq('bullmq/dist/cjs/classes/queue-events.js') as { QueueEvents: typeof BullQueueEvents };
export type QueueEvents = BullQueueEvents;

/** The one queue every generation job goes through. */
export const GENERATE_QUEUE = 'generate';

/**
 * How long BullMQ keeps a finished job whose bot has not settled it (the bot removes it as soon as
 * Postgres holds the outcome). No count limit: a busy day must never trim a finished job a bot has
 * not seen, or the sweep would take it for lost. Longer than the sweep's window (two days), past
 * which an unsettled job missing from the queue is given up, never run again.
 */
const FINISHED_JOB_RETENTION_S = 7 * 24 * 3600;

/**
 * Retries are for a whole-chain transient failure (every backend busy or briefly down);
 * each attempt already walks the fallback chain, so three is plenty.
 */
const DEFAULT_JOB_OPTIONS: JobsOptions = {
  attempts: 3,
  backoff: { type: 'exponential', delay: 2000 },
  removeOnComplete: { age: FINISHED_JOB_RETENTION_S },
  removeOnFail: { age: FINISHED_JOB_RETENTION_S },
};

export type RedisRole = 'producer' | 'blocking';

/**
 * Connection factory. Blocking connections (Worker, QueueEvents) retry forever as BullMQ requires;
 * the producer fails fast so an interaction is answered even when Redis is down.
 */
export function createRedis(url: string, role: RedisRole, extra: RedisOptions = {}): Redis {
  const base: RedisOptions =
    role === 'blocking'
      ? { maxRetriesPerRequest: null, enableReadyCheck: true }
      : { maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 2000 };
  return new Redis(url, { ...base, lazyConnect: false, ...extra });
}

/** The BullMQ job name is the request's kind (core/generation.ts JOB_KINDS). */
export type GenerateQueue = BullQueue<JobPayload, JobResult, JobKind>;

export function createGenerateQueue(connection: Redis, prefix: string, opts: Partial<QueueOptions> = {}): GenerateQueue {
  return new Queue<JobPayload, JobResult, JobKind>(GENERATE_QUEUE, {
    connection,
    prefix,
    defaultJobOptions: DEFAULT_JOB_OPTIONS,
    ...opts,
  });
}

/**
 * Adds a job to the queue under its database id, so adding it twice (a re-enqueue racing the first
 * add) leaves one job. `priority`: see core/quota.ts queuePriority.
 */
export async function enqueueJob(queue: Pick<GenerateQueue, 'add'>, payload: JobPayload, priority?: number): Promise<void> {
  await queue.add(payload.request.kind, payload, { jobId: payload.jobId, ...(priority === undefined ? {} : { priority }) });
}

/** Lock settings that make a killed worker's job come back within seconds. */
export function workerLockOptions(lockMs: number, stalledCheckMs: number) {
  return { lockDuration: lockMs, stalledInterval: stalledCheckMs, maxStalledCount: 2 } as const;
}
