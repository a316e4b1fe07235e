import type { Redis } from 'ioredis';
import { z } from 'zod';

/** What a worker last saw of one backend; the bot shows these in `/admin backends`. */
export const backendStatusSchema = z.object({
  backend: z.string(),
  family: z.string(),
  worker: z.string(),
  healthy: z.boolean(),
  detail: z.string(),
  latencyMs: z.number(),
  circuit: z.string(),
  inFlight: z.number().int(),
  paid: z.boolean(),
  price: z.string(),
  at: z.number(),
});
export type BackendStatus = z.infer<typeof backendStatusSchema>;

const key = (prefix: string) => `${prefix}:backend-status`;

/** Reports older than this are shown as stale (the worker may be gone). */
export const STATUS_STALE_MS = 60_000;

export async function publishBackendStatus(redis: Redis, prefix: string, statuses: BackendStatus[]): Promise<void> {
  if (statuses.length === 0) return;
  const tx = redis.multi();
  for (const s of statuses) tx.hset(key(prefix), `${s.backend}@${s.worker}`, JSON.stringify(s));
  tx.expire(key(prefix), 3600);
  await tx.exec();
}

/** Every worker's latest report per backend, malformed entries dropped. */
export async function readBackendStatus(redis: Redis, prefix: string): Promise<BackendStatus[]> {
  const raw = await redis.hgetall(key(prefix));
  const out: BackendStatus[] = [];
  for (const v of Object.values(raw)) {
    const parsed = backendStatusSchema.safeParse(JSON.parse(v));
    if (parsed.success) out.push(parsed.data);
  }
  return out.sort((a, b) => a.backend.localeCompare(b.backend) || a.worker.localeCompare(b.worker));
}
