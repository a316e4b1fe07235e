import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from '../../generated/prisma/client.js';

export type { PrismaClient };
export { Prisma, JobKind, JobStatus, NsfwMode } from '../../generated/prisma/client.js';
export type { Job, CostLedger, GuildSettings } from '../../generated/prisma/client.js';

/** Connections per process; the bot and the worker each hold one client. */
const POOL_SIZE = 10;

/**
 * Creates a Prisma client that talks to Postgres through the `pg` driver adapter.
 * @param url - a postgres connection string; `?schema=` is ignored by the adapter, so use a database per tenant.
 */
export function createPrisma(url: string): PrismaClient {
  const adapter = new PrismaPg({ connectionString: url, max: POOL_SIZE });
  return new PrismaClient({ adapter });
}
