import type { Redis } from 'ioredis';
import { z } from 'zod';
import { BACKEND_FAMILIES } from '../backend-families.js';

/** What a worker last saw of one backend; the bot shows these in `/admin backends`. */
export const backendStatusSchema = z.object({
  backend: z.string(),
  family: z.enum(BACKEND_FAMILIES),
  worker: z.string(),
  healthy: z.boolean(),
  detail: z.string(),
  latencyMs: z.number(),
  circuit: z.string(),
  inFlight: z.number().int(),
  paid: z.boolean(),
  price: z.string(),
  at: z.number(),
  /** Jobs the reporting worker process runs at once (WORKER_CONCURRENCY); absent from older workers. */
  concurrency: z.number().int().positive().optional(),
  /** A GPU box's identity (from its URL): one box, however many workers report it. */
  box: z.string().optional(),
  /** Position in the worker's BACKENDS. */
  order: z.number().int().nonnegative().optional(),
  /** Presets this backend runs, each with an estimate of dollars per image there; absent from older workers. */
  presets: z.record(z.string(), z.number().nonnegative()).optional(),
  /** The worker's OVERFLOW_AFTER_S. */
  overflowAfterS: z.number().nonnegative().optional(),
  /** The GPU link (/admin gpu link) the reporting worker joined with, for a guild's own box. */
  link: z.string().optional(),
});
export type BackendStatus = z.infer<typeof backendStatusSchema>;

export const backendStatusKey = (prefix: string) => `${prefix}:backend-status`;
const key = backendStatusKey;

export async function publishBackendStatus(redis: Redis, prefix: string, statuses: BackendStatus[]): Promise<void> {
  if (statuses.length === 0) return;
  const tx = redis.multi();
  for (const s of statuses) tx.hset(key(prefix), `${s.backend}@${s.worker}`, JSON.stringify(s));
  tx.expire(key(prefix), 3600);
  await tx.exec();
}

/** A stopping worker withdraws its reports, so the bot stops counting its slots at once. */
export async function removeBackendStatus(redis: Redis, prefix: string, worker: string, backends: readonly string[]): Promise<void> {
  if (backends.length === 0) return;
  await redis.hdel(key(prefix), ...backends.map((b) => `${b}@${worker}`));
}

/** Hash values as stored, malformed entries (bad JSON or shape) dropped. */
export function parseBackendStatuses(values: readonly string[]): BackendStatus[] {
  const out: BackendStatus[] = [];
  for (const v of values) {
    let json: unknown;
    try {
      json = JSON.parse(v);
    } catch {
      continue;
    }
    const parsed = backendStatusSchema.safeParse(json);
    if (parsed.success) out.push(parsed.data);
  }
  return out;
}

/** Every worker's latest report per backend, malformed entries dropped. */
export async function readBackendStatus(redis: Redis, prefix: string): Promise<BackendStatus[]> {
  const raw = await redis.hgetall(key(prefix));
  return parseBackendStatuses(Object.values(raw)).sort((a, b) => a.backend.localeCompare(b.backend) || a.worker.localeCompare(b.worker));
}
