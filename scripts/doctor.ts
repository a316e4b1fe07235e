/**
 * `npm run doctor`: checks configuration, Postgres, Redis, the Discord token and every backend,
 * one line each with ✓/✗ and, for each ✗, the fix in plain words. Exits non-zero when a required
 * check fails. `--generate` also runs one small real job on each backend and saves the image.
 */
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { REST, Routes } from 'discord.js';
import { Redis } from 'ioredis';
import pg from 'pg';
import { botConfigSchema, ConfigError, loadConfig, workerConfigSchema } from '../core/config.js';
import { parseImagineOptions } from '../core/generation.js';
import { createLogger, scrubUrlCredentials } from '../core/io/logger.js';
import { createBackends } from '../worker/backends/registry.js';

type Line = { ok: boolean; what: string; fix?: string; warn?: boolean };
const lines: Line[] = [];
const say = (l: Line) => {
  lines.push(l);
  const mark = l.ok ? (l.warn ? '!' : '✓') : '✗';
  process.stdout.write(`${mark} ${l.what}${l.fix ? `\n    → ${l.fix}` : ''}\n`);
};

function tryConfig<T>(name: string, load: () => T): T | null {
  try {
    const c = load();
    say({ ok: true, what: `${name} configuration is valid` });
    return c;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const l of err.lines)
      say({ ok: false, what: `${name} configuration: ${l}`, fix: 'set it in .env (see README.md, Configuration)' });
    return null;
  }
}

async function checkPostgres(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    say({ ok: true, what: `Postgres reachable at ${scrubUrlCredentials(url)}` });
    const dir = join(dirname(fileURLToPath(import.meta.url)), '..', 'prisma', 'migrations');
    const wanted = (await readdir(dir, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name);
    const applied = await client
      .query<{ migration_name: string }>('SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL')
      .then((r) => new Set(r.rows.map((x) => x.migration_name)))
      .catch(() => new Set<string>());
    const missing = wanted.filter((m) => !applied.has(m));
    if (missing.length === 0) say({ ok: true, what: `Postgres migrations applied (${wanted.length})` });
    else
      say({
        ok: false,
        what: `Postgres is missing ${missing.length} migration(s): ${missing.join(', ')}`,
        fix: 'run `npm run db:migrate` (or `docker compose run --rm migrate`)',
      });
  } catch (err) {
    say({
      ok: false,
      what: `Postgres not reachable: ${scrubUrlCredentials(String((err as Error).message))}`,
      fix: 'check DATABASE_URL and that Postgres is running',
    });
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function checkRedis(url: string): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 3000, enableOfflineQueue: false });
  try {
    await redis.connect();
    const info = await redis.info();
    const version = /redis_version:(\S+)/.exec(info)?.[1] ?? '?';
    const major = Number(version.split('.')[0]);
    say({ ok: major >= 6, what: `Redis ${version} reachable`, fix: major >= 6 ? undefined : 'BullMQ needs Redis 6.2 or newer' });
    const aof = /aof_enabled:(\d)/.exec(info)?.[1] === '1';
    const rdb = ((await redis.config('GET', 'save').catch(() => ['save', ''])) as string[])[1] !== '';
    if (aof || rdb) say({ ok: true, what: `Redis persistence on (${aof ? 'AOF' : 'RDB snapshots'})` });
    else
      say({
        ok: true,
        warn: true,
        what: 'Redis persistence is OFF: queued jobs are lost if Redis restarts',
        fix: 'run redis-server with --appendonly yes (docker-compose.yml does)',
      });
    const policy = /maxmemory_policy:(\S+)/.exec(info)?.[1];
    if (policy && policy !== 'noeviction')
      say({
        ok: false,
        what: `Redis maxmemory-policy is ${policy}`,
        fix: 'set maxmemory-policy noeviction: BullMQ keys must never be evicted',
      });
  } catch (err) {
    say({ ok: false, what: `Redis not reachable: ${(err as Error).message}`, fix: 'check REDIS_URL and that Redis is running' });
  } finally {
    redis.disconnect();
  }
}

async function checkDiscord(token: string, api: string, appId: string): Promise<void> {
  try {
    const rest = new REST({ api, timeout: 5000, retries: 0 }).setToken(token);
    const me = (await rest.get(Routes.user('@me'))) as { id: string; username: string };
    say({ ok: true, what: `Discord token belongs to ${me.username} (${me.id})` });
    if (me.id !== appId)
      say({
        ok: false,
        what: `DISCORD_APP_ID ${appId} is not this bot's id ${me.id}`,
        fix: 'copy the Application ID from the Developer Portal',
      });
  } catch (err) {
    say({
      ok: false,
      what: `Discord token refused or Discord unreachable: ${(err as Error).message}`,
      fix: 'reset the token in the Developer Portal (Bot → Reset Token) and put it in DISCORD_TOKEN',
    });
  }
}

async function main(): Promise<void> {
  const generate = process.argv.includes('--generate');
  const bot = tryConfig('bot', () => loadConfig(botConfigSchema, process.env));
  const worker = tryConfig('worker', () => loadConfig(workerConfigSchema, process.env));
  if (bot) {
    await checkPostgres(bot.DATABASE_URL);
    await checkDiscord(bot.DISCORD_TOKEN, bot.DISCORD_API_URL, bot.DISCORD_APP_ID);
  }
  await checkRedis((bot ?? worker)?.REDIS_URL ?? process.env.REDIS_URL ?? 'redis://localhost:6379');
  if (worker) {
    const backends = await createBackends(worker, createLogger({ level: 'silent' }));
    for (const b of backends) {
      const h = await b.health(AbortSignal.timeout(5000));
      say({
        ok: h.ok,
        what: `backend ${b.id}: ${h.ok ? 'healthy' : 'down'} (${h.detail}, ${Math.round(h.latencyMs)} ms)`,
        fix: h.ok ? undefined : `check ${b.family.toUpperCase()} settings and that the service is running`,
      });
      if (generate && h.ok) {
        try {
          const request = { ...parseImagineOptions({ prompt: 'a lighthouse on a cliff at dusk', steps: 12 }), width: 512, height: 512 };
          const out = await b.generate({ jobId: 'doctor', request }, { signal: AbortSignal.timeout(300_000), onProgress: () => undefined });
          await mkdir('doctor-output', { recursive: true });
          const file = join('doctor-output', `${b.id.replace(/[^a-z0-9]+/gi, '-')}.png`);
          await writeFile(file, out.images[0]!);
          say({ ok: true, what: `backend ${b.id} made an image: ${file}` });
        } catch (err) {
          say({
            ok: false,
            what: `backend ${b.id} could not make an image: ${(err as Error).message}`,
            fix: 'see the worker logs; the box may lack an SDXL checkpoint',
          });
        }
      }
    }
  }
  const failed = lines.filter((l) => !l.ok).length;
  process.stdout.write(failed === 0 ? '\nAll checks passed.\n' : `\n${failed} check(s) failed.\n`);
  process.exitCode = failed === 0 ? 0 : 1;
}

await main();
process.exit(process.exitCode ?? 0);
