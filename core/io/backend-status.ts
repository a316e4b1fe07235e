import { createHash } from 'node:crypto';
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

/** How long a report lasts after it was written: the hash's own life, which every live worker's report renews. */
const REPORT_LIFE_S = 3600;

/*
 * Writes this worker's reports and, in the same script, drops reports older than REPORT_LIFE_S (or
 * unreadable): a worker killed without stopping (OOM, a box switched off) never withdraws its own,
 * and its successor is another field (`host:pid`), so while any worker reports, the hash would
 * otherwise keep one field per crash for good, read whole at every queue position read.
 */
const PUBLISH = `
for i = 2, #ARGV - 1, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
local cutoff = tonumber(ARGV[1])
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local ok, r = pcall(cjson.decode, all[i + 1])
  local at = ok and type(r) == 'table' and tonumber(r.at)
  if not at or at < cutoff then redis.call('HDEL', KEYS[1], all[i]) end
end
redis.call('EXPIRE', KEYS[1], ARGV[#ARGV])
return 1
`;
const PUBLISH_SHA = createHash('sha1').update(PUBLISH).digest('hex');

export async function publishBackendStatus(redis: Redis, prefix: string, statuses: BackendStatus[]): Promise<void> {
  if (statuses.length === 0) return;
  const args = [
    String(Date.now() - REPORT_LIFE_S * 1000),
    ...statuses.flatMap((s) => [`${s.backend}@${s.worker}`, JSON.stringify(s)]),
    String(REPORT_LIFE_S),
  ];
  try {
    await redis.evalsha(PUBLISH_SHA, 1, key(prefix), ...args);
  } catch (err) {
    if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
    await redis.eval(PUBLISH, 1, key(prefix), ...args);
  }
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
