import pg from 'pg';
import type { PrismaClient } from '../../generated/prisma/client.js';

export type { PrismaClient };

/** Connections per process for admissions, reads and settings. */
const POOL_SIZE = 10;
/**
 * Of those, how many admission statements may hold at once (bot/store/admission-gate.ts): the
 * rest stay free for the reads that come with them (a guild's policy, a button's job, /quota).
 */
export const ADMISSION_SLOTS = POOL_SIZE - 2;
/**
 * Connections of the outbound side's own pool (settle, mark running and delivered, the sweep):
 * admissions cannot take them, so a finished job is settled and posted during any burst. Its
 * statements are few and batched (one settle per job, one mark-delivered per turn of the loop).
 */
const OUTBOUND_POOL_SIZE = 3;

/**
 * Bounds on a slow or unreachable Postgres. An interaction is acknowledged within 1.2 s whatever
 * the database does (bot/router.ts), and a form that must load a job first gives up at 2 s
 * (commands/buttons/edit.ts); these make sure the member then hears "database unavailable" within
 * seconds instead of waiting forever, and that a hung server cannot hold every pooled connection.
 * Our statements take milliseconds; anything near these limits is a database in trouble.
 */
const PG_SESSION = {
  /**
   * Months and days are UTC (core/quota.ts, core/budget.ts): a '<month>-01'::date compared with a
   * timestamptz is midnight in the session's time zone, which is the server's unless set here.
   */
  options: '-c TimeZone=UTC',
  /** Waiting for a pooled connection, or for a new one to open. */
  connectionTimeoutMillis: 2000,
  /** Server side: a statement running longer is cancelled and rolled back (a reservation never half-happens). */
  statement_timeout: 5000,
  /** Server side: waiting for a row lock (a member's usage row held by a stuck session). */
  lock_timeout: 3000,
  /** Client side, for a server that stops answering at all (network partition). */
  query_timeout: 7000,
  /** A Prisma transaction left open by a stuck process releases its locks. */
  idle_in_transaction_session_timeout: 10_000,
} as const;

/** The `pg` pool for the hand-written statements, and Prisma on the same pool for the model API. */
export interface Database {
  /**
   * Every read and the job store's hot statements (reserve, settle, mark delivered) go straight to
   * `pg`: they are hand-written SQL anyway, and Prisma's raw-query path adds about 0.25 ms of CPU to each.
   */
  pool: pg.Pool;
  /** The outbound side's pool, for the job store that settles and delivers. */
  outbound: pg.Pool;
  /**
   * Prisma, for the settings writes (transactions with their audit rows). Loaded on first use:
   * its query compiler holds some 30 MB, which a bot whose moderators change nothing never needs.
   */
  prisma(): Promise<PrismaClient>;
  close(): Promise<void>;
}

/**
 * Opens the pool; Prisma comes on demand, through the `pg` driver adapter on the same pool.
 * @param url - a postgres connection string; `?schema=` is ignored by the adapter, so use a database per tenant.
 */
export function openDatabase(url: string, onIdleError: (err: Error) => void = () => undefined): Database {
  const pool = new pg.Pool({ connectionString: url, max: POOL_SIZE, ...PG_SESSION });
  // An idle connection the server drops (restart, failover) errors on the pool; unhandled, that
  // would end the process. The pool replaces it; the next query simply opens a new one.
  pool.on('error', onIdleError);
  const outbound = new pg.Pool({ connectionString: url, max: OUTBOUND_POOL_SIZE, ...PG_SESSION });
  outbound.on('error', onIdleError);
  let prisma: Promise<PrismaClient> | undefined;
  return {
    pool,
    outbound,
    prisma() {
      prisma ??= Promise.all([import('../../generated/prisma/client.js'), import('@prisma/adapter-pg')]).then(
        ([{ PrismaClient }, { PrismaPg }]) => new PrismaClient({ adapter: new PrismaPg(pool) }),
      );
      return prisma;
    },
    async close() {
      if (prisma) await (await prisma).$disconnect();
      await Promise.all([pool.end(), outbound.end()]);
    },
  };
}
