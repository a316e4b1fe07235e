import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from '../../generated/prisma/client.js';

export type { PrismaClient };

/** Connections per process; the bot and the worker each hold one client. */
const POOL_SIZE = 10;

/** Prisma for the model API, and the same `pg` pool for the per-job statements. */
export interface Database {
  prisma: PrismaClient;
  /**
   * The job store's hot statements (reserve, settle, mark delivered) go straight to `pg`: they are
   * hand-written SQL anyway, and Prisma's raw-query path adds about 0.25 ms of CPU to each.
   */
  pool: pg.Pool;
  close(): Promise<void>;
}

/**
 * Opens the pool and a Prisma client on it (through the `pg` driver adapter).
 * @param url - a postgres connection string; `?schema=` is ignored by the adapter, so use a database per tenant.
 */
export function openDatabase(url: string, onIdleError: (err: Error) => void = () => undefined): Database {
  const pool = new pg.Pool({ connectionString: url, max: POOL_SIZE });
  // An idle connection the server drops (restart, failover) errors on the pool; unhandled, that
  // would end the process. The pool replaces it; the next query simply opens a new one.
  pool.on('error', onIdleError);
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
  return {
    prisma,
    pool,
    async close() {
      await prisma.$disconnect();
      await pool.end();
    },
  };
}
