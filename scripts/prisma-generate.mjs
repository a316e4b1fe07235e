// Runs `prisma generate` without the native schema engine, which cannot be downloaded here.
//
//   node scripts/prisma-generate.mjs             always generate
//   node scripts/prisma-generate.mjs --if-stale  only when the client is missing or older than the schema
//
// The test setup, `npm run typecheck`, `npm run build` and `npm run bot` call the --if-stale form, so a
// fresh clone needs no separate generate step.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const SCHEMA = join(root, 'prisma', 'schema.prisma');
const CLIENT = join(root, 'generated', 'prisma', 'client.ts');
// Beside the client, not inside it: generate empties its output folder.
const STAMP = join(root, 'generated', '.schema.sha256');

/** What the generated client depends on: the schema and the generator's version. */
function fingerprint() {
  const version = JSON.parse(readFileSync(require.resolve('prisma/package.json'), 'utf8')).version;
  return createHash('sha256').update(`prisma ${version}\n`).update(readFileSync(SCHEMA)).digest('hex');
}

/** true when generated/ is missing or was generated from another schema or Prisma version. */
function isClientStale() {
  if (!existsSync(CLIENT) || !existsSync(STAMP)) return true;
  return readFileSync(STAMP, 'utf8').trim() !== fingerprint();
}

/**
 * Generates the Prisma client into generated/prisma.
 * @param {{ ifStale?: boolean, args?: string[], quiet?: boolean }} [opts]
 * @returns {boolean} true when it generated, false when the client was already current.
 */
export function generatePrismaClient(opts = {}) {
  if (opts.ifStale && !isClientStale()) return false;
  const cli = join(dirname(require.resolve('prisma/package.json')), 'build', 'index.js');
  const env = { ...process.env };
  // Generate never calls the engine; any existing file stops the CLI from downloading one.
  if (!env.PRISMA_SCHEMA_ENGINE_BINARY || !existsSync(env.PRISMA_SCHEMA_ENGINE_BINARY)) {
    env.PRISMA_SCHEMA_ENGINE_BINARY = process.execPath;
  }
  const stamp = fingerprint();
  const run = spawnSync(process.execPath, [cli, 'generate', ...(opts.args ?? [])], {
    cwd: root,
    env,
    stdio: opts.quiet ? ['ignore', 'pipe', 'pipe'] : 'inherit',
    encoding: 'utf8',
  });
  if (run.error) throw new Error(`prisma generate failed to start: ${run.error.message}`);
  if (run.status !== 0) {
    const output = opts.quiet ? `\n${run.stdout}${run.stderr}` : '';
    throw new Error(`prisma generate exited with ${run.status}${output}`);
  }
  writeFileSync(STAMP, `${stamp}\n`);
  return true;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  const ifStale = args.includes('--if-stale');
  try {
    generatePrismaClient({ ifStale, args: args.filter((a) => a !== '--if-stale') });
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
}
