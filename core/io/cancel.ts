import type { Redis } from 'ioredis';

/**
 * Cancellation of running jobs across processes: the bot marks the job cancelled (a key with a TTL,
 * read by a worker that picks the job up later) and publishes its id; every worker listens and
 * aborts the job if it is running there.
 */
const channel = (prefix: string) => `${prefix}:cancel`;
const flag = (prefix: string, jobId: string) => `${prefix}:cancelled:${jobId}`;

export async function requestCancel(redis: Redis, prefix: string, jobId: string): Promise<void> {
  await redis.set(flag(prefix, jobId), '1', 'EX', 86_400);
  await redis.publish(channel(prefix), jobId);
}

export async function isCancelRequested(redis: Redis, prefix: string, jobId: string): Promise<boolean> {
  return (await redis.exists(flag(prefix, jobId))) === 1;
}

/** Subscribes on a dedicated connection (a subscribed connection can do nothing else). */
export async function onCancelRequests(subscriber: Redis, prefix: string, handler: (jobId: string) => void): Promise<void> {
  subscriber.on('message', (ch: string, jobId: string) => {
    if (ch === channel(prefix)) handler(jobId);
  });
  await subscriber.subscribe(channel(prefix));
}
