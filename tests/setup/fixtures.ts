import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import pg from 'pg';
import { test as base, inject } from 'vitest';
import { openDatabase, type PrismaClient } from '../../bot/store/prisma.js';

export { describe, expect } from 'vitest';

/** A private database cloned from the migrated template, dropped after the test. */
export interface TestDb {
  url: string;
  name: string;
  prisma: PrismaClient;
  /** The pool under `prisma`, for stores that speak `pg` directly. */
  pool: pg.Pool;
}

interface Fixtures {
  db: TestDb;
  /** Unique Redis key prefix; every key under it is deleted after the test. */
  redisPrefix: string;
}

const REDIS_URL = process.env.TEST_REDIS_URL || 'redis://127.0.0.1:6379';
const CLONE_ATTEMPTS = 20;

// One clone at a time per worker: CREATE DATABASE … TEMPLATE takes an exclusive lock on the template anyway.
let cloneQueue: Promise<unknown> = Promise.resolve();

async function adminQuery(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: inject('pgAdminUrl') });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Clones the template, retrying while another worker's clone still holds it. */
async function cloneTemplate(name: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await adminQuery(`CREATE DATABASE "${name}" TEMPLATE "${inject('templateDb')}"`);
      return;
    } catch (err) {
      const busy = (err as { code?: string }).code === '55006';
      if (!busy || attempt >= CLONE_ATTEMPTS) throw err;
      await sleep(50 * attempt);
    }
  }
}

function serialized<T>(fn: () => Promise<T>): Promise<T> {
  const run = cloneQueue.then(fn, fn);
  cloneQueue = run.catch(() => undefined);
  return run;
}

/** Deletes every key under `prefix` with SCAN + UNLINK, so large keyspaces never block Redis. */
async function deleteKeys(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
    if (keys.length > 0) await redis.unlink(...keys);
    cursor = next;
  } while (cursor !== '0');
}

/** Vitest `test` with lazy `db` and `redisPrefix` fixtures; each is created only for tests that name it. */
export const test = base.extend<Fixtures>({
  db: async ({}, use) => {
    const name = `${inject('cloneDbPrefix')}${randomBytes(6).toString('hex')}`;
    await serialized(() => cloneTemplate(name));
    const u = new URL(inject('pgAdminUrl'));
    u.pathname = `/${name}`;
    const url = u.toString();
    const database = openDatabase(url);
    try {
      await use({ url, name, prisma: await database.prisma(), pool: database.pool });
    } finally {
      await database.close();
      // FORCE ends sessions a test's child processes may still hold.
      await adminQuery(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    }
  },
  redisPrefix: async ({}, use) => {
    const prefix = `t:${randomBytes(6).toString('hex')}`;
    try {
      await use(prefix);
    } finally {
      const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 3 });
      try {
        await deleteKeys(redis, prefix);
      } finally {
        redis.disconnect();
      }
    }
  },
});
