import { expect } from 'vitest';
import { openDatabase } from '../../bot/store/prisma.js';
import { test } from '../setup/fixtures.js';

test('months begin at 00:00 UTC whatever time zone the database server is set to (a managed Postgres in New York, say)', async ({ db }) => {
  await db.pool.query(`ALTER DATABASE "${db.name}" SET timezone = 'America/New_York'`);
  const database = openDatabase(db.url);
  try {
    // The month boundary every budget and stat compares with: '<month>-01'::date as a timestamptz.
    const { rows } = await database.pool.query<{ start: Date }>(`SELECT '2026-12-01'::date::timestamptz AS start`);
    expect(rows[0]!.start.toISOString()).toBe('2026-12-01T00:00:00.000Z');
    const out = await database.outbound.query<{ tz: string }>("SELECT current_setting('TimeZone') AS tz");
    expect(out.rows[0]!.tz).toBe('UTC');
  } finally {
    await database.close();
  }
});
