import { cp, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { createMigration } from '../../prisma/migrate.js';
import { describe, expect, test } from '../setup/fixtures.js';

const PRISMA_DIR = fileURLToPath(new URL('../../prisma/', import.meta.url));
const MIGRATIONS_DIR = join(PRISMA_DIR, 'migrations');

const EXPECTED_TABLES = [
  'audit_log',
  'banned_words',
  'budget_notices',
  'cost_ledger',
  'guild_settings',
  'jobs',
  'member_usage',
  'user_quota_overrides',
];

async function query<R extends pg.QueryResultRow>(url: string, sql: string): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<R>(sql)).rows;
  } finally {
    await client.end();
  }
}

/** Table names the schema maps its models to, so a new model cannot silently miss its migration. */
async function schemaTables(): Promise<string[]> {
  const schema = await readFile(join(PRISMA_DIR, 'schema.prisma'), 'utf8');
  const models = schema.match(/^model \w+ \{[\s\S]*?^\}/gm) ?? [];
  return models.map((m) => /@@map\("([^"]+)"\)/.exec(m)?.[1] ?? '').sort();
}

describe('migrations', () => {
  test('a cloned database has every table of the schema and the full migration history', async ({ db }) => {
    const rows = await query<{ table_name: string }>(
      db.url,
      "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    );
    const tables = rows.map((r) => r.table_name);
    expect(tables).toEqual(expect.arrayContaining([...EXPECTED_TABLES, '_prisma_migrations']));
    expect(tables).toEqual(expect.arrayContaining(await schemaTables()));

    const applied = await query<{ migration_name: string }>(
      db.url,
      'SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL ORDER BY 1',
    );
    const dirs = (await readdir(MIGRATIONS_DIR, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name);
    expect(applied.map((r) => r.migration_name)).toEqual(dirs.sort());
  });

  test('schema.prisma matches the migrations: creating a migration reports no changes', async ({ db }) => {
    // A copy, so a drift would be written to a temp directory instead of the repository.
    const dir = await mkdtemp(join(tmpdir(), 'imagebot-migrations-'));
    try {
      await cp(MIGRATIONS_DIR, dir, { recursive: true });
      const created = await createMigration(db.url, 'drift_check', { migrationsDir: dir });
      expect(created?.sql ?? null).toBeNull();
      expect((await readdir(dir)).sort()).toEqual((await readdir(MIGRATIONS_DIR)).sort());
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a cloned database stores and reads a job through the Prisma client', async ({ db }) => {
    const created = await db.prisma.job.create({
      data: {
        guildId: 'g1',
        channelId: 'c1',
        userId: 'u1',
        kind: 'txt2img',
        params: { prompt: 'a lighthouse at dusk', steps: 30 },
        imageCount: 2,
        day: new Date('2026-11-23T00:00:00Z'),
        applicationId: 'a1',
        interactionId: 'i1',
        interactionToken: 'tok',
        seed: 9_007_199_254_740_993n,
        costUsd: '0.012345',
      },
    });
    expect(created.id).toMatch(/^[0-9a-f-]{36}$/);

    const read = await db.prisma.job.findUniqueOrThrow({ where: { id: created.id } });
    expect(read).toMatchObject({ status: 'queued', imageCount: 2, channelNsfw: false, seed: 9_007_199_254_740_993n });
    expect(read.params).toEqual({ prompt: 'a lighthouse at dusk', steps: 30 });
    expect(read.costUsd.toString()).toBe('0.012345');
    expect(read.day.toISOString()).toBe('2026-11-23T00:00:00.000Z');
  });
});
