import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { applyMigrations } from '../../prisma/migrate.js';
import { generatePrismaClient } from '../../scripts/prisma-generate.mjs';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Migrated database every test database is cloned from. */
    templateDb: string;
    /** Connection string of the maintenance database used for CREATE/DROP DATABASE. */
    pgAdminUrl: string;
    /** Name prefix of this run's clones, so teardown can drop the ones a crashed test left behind. */
    cloneDbPrefix: string;
  }
}

const DEFAULT_ADMIN_URL = 'postgresql://postgres@127.0.0.1:5432/postgres';

/** Runs `sql` on the maintenance database with a short-lived connection. */
async function admin(url: string, sql: string): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await client.query(sql);
  } finally {
    await client.end();
  }
}

/** Returns `url` pointing at another database on the same server. */
function databaseUrl(adminUrl: string, name: string): string {
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

/**
 * Generates the Prisma client when it is missing or stale (test files import it, and they load only
 * after this runs), then creates and migrates one template database per run; tests clone it with
 * CREATE DATABASE … TEMPLATE. So `npm ci && npm test` on a fresh clone needs no other step.
 * @returns the teardown that drops the template and any clone this run left behind.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // About 3 s when it runs; a hash of the schema skips it when the client is current.
  generatePrismaClient({ ifStale: true, quiet: true });
  const adminUrl = process.env.TEST_PG_URL || DEFAULT_ADMIN_URL;
  const runId = randomBytes(4).toString('hex');
  const templateDb = `imagebot_tpl_${runId}`;
  const cloneDbPrefix = `imagebot_t_${runId}_`;

  await admin(adminUrl, `CREATE DATABASE "${templateDb}"`);
  try {
    await applyMigrations(databaseUrl(adminUrl, templateDb));
    // Nobody may connect to the template any more, so a stray session cannot block a clone.
    await admin(adminUrl, `ALTER DATABASE "${templateDb}" ALLOW_CONNECTIONS false`);
  } catch (err) {
    await admin(adminUrl, `DROP DATABASE IF EXISTS "${templateDb}" WITH (FORCE)`);
    throw err;
  }

  project.provide('templateDb', templateDb);
  project.provide('pgAdminUrl', adminUrl);
  project.provide('cloneDbPrefix', cloneDbPrefix);

  return async () => {
    const leftovers = await admin(
      adminUrl,
      `SELECT datname FROM pg_database WHERE starts_with(datname, '${cloneDbPrefix}') OR datname = '${templateDb}'`,
    );
    for (const row of leftovers.rows as Array<{ datname: string }>) {
      await admin(adminUrl, `DROP DATABASE IF EXISTS "${row.datname}" WITH (FORCE)`);
    }
  };
}
