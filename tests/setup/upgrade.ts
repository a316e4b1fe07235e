import { cp, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { inject } from 'vitest';
import { applyMigrations } from '../../prisma/migrate.js';

const MIGRATIONS_DIR = fileURLToPath(new URL('../../prisma/migrations/', import.meta.url));

/** A database as a deployment had it before an upgrade, for tests of what the upgrade's migrations do to its rows. */
export interface OlderDatabase {
  url: string;
  name: string;
  /** A connection as the server's superuser, outside the database (to watch its sessions). */
  admin: pg.Client;
  /** Applies every migration, as the upgrade does. */
  upgrade(): Promise<void>;
  drop(): Promise<void>;
}

/** A fresh database with every migration before the one whose name ends with `_<suffix>`. */
export async function databaseBefore(suffix: string): Promise<OlderDatabase> {
  const adminUrl = inject('pgAdminUrl');
  const name = `${inject('cloneDbPrefix')}upgrade_${Math.random().toString(16).slice(2, 10)}`;
  const url = Object.assign(new URL(adminUrl), { pathname: `/${name}` }).toString();
  const all = (await readdir(MIGRATIONS_DIR, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name);
  const upgrade = all.find((n) => n.endsWith(`_${suffix}`));
  if (!upgrade) throw new Error(`no migration named *_${suffix}`);
  const before = await mkdtemp(join(tmpdir(), 'imagebot-migrations-'));
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await cp(MIGRATIONS_DIR, before, { recursive: true });
    for (const n of all.filter((n) => n >= upgrade)) await rm(join(before, n), { recursive: true });
    await applyMigrations(url, { migrationsDir: before });
  } finally {
    await rm(before, { recursive: true, force: true });
  }
  return {
    url,
    name,
    admin,
    upgrade: async () => {
      await applyMigrations(url);
    },
    async drop() {
      await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await admin.end();
    },
  };
}
