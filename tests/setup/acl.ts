import { Redis } from 'ioredis';

export const TEST_REDIS_URL = process.env.TEST_REDIS_URL || 'redis://127.0.0.1:6379';

/**
 * Redis users are global to the server (CI's Redis is shared): a test's users are named after its
 * redisPrefix (core/io/link.ts names them `<prefix>-link-…`, `<prefix>-join-…`) and deleted here.
 */
export async function deleteTestUsers(redisPrefix: string): Promise<void> {
  const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 3 });
  try {
    const users = (await redis.call('ACL', 'USERS')) as string[];
    const mine = users.filter((u) => u.startsWith(`${redisPrefix}-`));
    if (mine.length > 0) await redis.call('ACL', 'DELUSER', ...mine);
  } finally {
    redis.disconnect();
  }
}

/** Connections currently authenticated as a Redis user. */
export async function connectionsOf(redis: Redis, user: string): Promise<number> {
  const list = (await redis.call('CLIENT', 'LIST')) as string;
  return list.split('\n').filter((l) => l.includes(` user=${user} `)).length;
}

/** A Redis URL with a user's credentials in it. */
export function urlAs(user: string, password: string, base = TEST_REDIS_URL): string {
  const u = new URL(base);
  u.username = user;
  u.password = password;
  return u.toString();
}

/** Polls an async check until it gives a value (the fake Discord's waitFor takes synchronous ones). */
export async function until<T>(fn: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
