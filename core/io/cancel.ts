import type { Redis } from 'ioredis';

/**
 * Cancellation of running jobs across processes: the bot marks the job cancelled (a key with a TTL,
 * read by a worker that picks the job up later) and publishes its id; every worker listens and
 * aborts the job if it is running there.
 */
const channel = (prefix: string) => `${prefix}:cancel`;
/** The key that says a job was cancelled (set, any value); the worker reads it with the job's other start-up keys. */
export const cancelFlagKey = (prefix: string, jobId: string) => `${prefix}:cancelled:${jobId}`;

export async function requestCancel(redis: Redis, prefix: string, jobId: string): Promise<void> {
  await redis.set(cancelFlagKey(prefix, jobId), '1', 'EX', 86_400);
  await redis.publish(channel(prefix), jobId);
}

/** Subscribes on a dedicated connection (a subscribed connection can do nothing else). */
export async function onCancelRequests(subscriber: Redis, prefix: string, handler: (jobId: string) => void): Promise<void> {
  subscriber.on('message', (ch: string, jobId: string) => {
    if (ch === channel(prefix)) handler(jobId);
  });
  await subscriber.subscribe(channel(prefix));
}
