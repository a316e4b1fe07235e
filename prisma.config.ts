import { defineConfig } from 'prisma/config';

// Same default as prisma/migrate.ts so the CLI and the WASM migrator target one database.
const DEFAULT_DATABASE_URL = 'postgresql://postgres:postgres@localhost:5432/imagebot';

export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  datasource: { url: process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL },
});
