import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, test } from '../setup/fixtures.js';
import { ROOT } from '../setup/processes.js';

const MIGRATIONS = join(ROOT, 'prisma', 'migrations');

describe('the official prisma migrate deploy can take over the database', () => {
  test('every migration is recorded as Prisma’s CLI records it: folder name, SHA-256 of migration.sql, finished, not rolled back', async ({
    db,
  }) => {
    const dirs = (await readdir(MIGRATIONS, { withFileTypes: true }))
      .filter((d) => d.isDirectory())
      .map((d) => d.name)
      .sort();
    const rows = await db.pool.query<{
      migration_name: string;
      checksum: string;
      finished_at: Date | null;
      rolled_back_at: Date | null;
      applied_steps_count: number;
    }>('SELECT migration_name, checksum, finished_at, rolled_back_at, applied_steps_count FROM _prisma_migrations ORDER BY migration_name');
    expect(rows.rows.map((r) => r.migration_name)).toEqual(dirs);
    for (const r of rows.rows) {
      const sql = await readFile(join(MIGRATIONS, r.migration_name, 'migration.sql'));
      expect(r.checksum).toBe(createHash('sha256').update(sql).digest('hex'));
      expect(r.finished_at).not.toBeNull();
      expect(r.rolled_back_at).toBeNull();
      expect(r.applied_steps_count).toBe(1);
    }
  });
});
