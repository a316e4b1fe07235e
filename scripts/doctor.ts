/**
 * `npm run doctor` (in the image: `node dist/scripts/doctor.js`): checks what the role in front of it
 * needs, one line each with ✓/!/✗ and, for each ✗, the fix in plain words. Exits non-zero when a
 * check fails.
 *
 *   --role bot     configuration, Postgres and its migrations, Redis (and, with LINK_REDIS_URL, that
 *                  the bot may manage Redis users), the Discord token and commands
 *   --role worker  configuration, Redis, every backend (no Discord or database settings needed)
 *   --role all     both
 *   (no --role)    guessed from what is configured: a GPU box with only backend settings is a worker
 *   --generate     also makes one small image per backend into doctor-output/ in the working directory
 *   --out DIR      where --generate saves them (in Docker: a directory mounted from the host, README)
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { REST, Routes } from 'discord.js';
import { Redis } from 'ioredis';
import pg from 'pg';
import { inviteUrl } from '../bot/invite.js';
import { registrationPayload } from '../commands/index.js';
import { type BotConfig, botConfigSchema, ConfigError, loadConfig, type WorkerConfig, workerConfigSchema } from '../core/config.js';
import { parseImagineOptions } from '../core/generation.js';
import { loadEnvFile } from '../core/io/env-file.js';
import { createLogger, scrubUrlCredentials } from '../core/io/logger.js';
import { isPlaintextRemoteRedis } from '../core/io/redis-safety.js';
import { createBackends } from '../worker/backends/registry.js';

type Role = 'bot' | 'worker';
type Line = { ok: boolean; what: string; fix?: string; warn?: boolean };
const lines: Line[] = [];
const say = (l: Line) => {
  lines.push(l);
  const mark = l.ok ? (l.warn ? '!' : '✓') : '✗';
  process.stdout.write(`${mark} ${l.what}${l.fix ? `\n    → ${l.fix}` : ''}\n`);
};

const BOT_MARKERS = ['DISCORD_TOKEN', 'DISCORD_APP_ID', 'DATABASE_URL'];
const WORKER_MARKERS = ['A1111_URL', 'COMFYUI_URL', 'REPLICATE_API_TOKEN', 'HF_TOKEN', 'HF_ENDPOINT_URL', 'BACKENDS'];
const USAGE = 'usage: doctor [--role bot|worker|all] [--generate [--out DIR]]';

/** The roles to check: from --role, else from which settings are present. */
function chooseRoles(argv: string[], env: Record<string, string | undefined>): { roles: Role[]; why: string } {
  const i = argv.findIndex((a) => a === '--role' || a.startsWith('--role='));
  if (i >= 0) {
    const value = argv[i]!.includes('=') ? argv[i]!.split('=')[1] : argv[i + 1];
    if (value === 'bot' || value === 'worker') return { roles: [value], why: `--role ${value}` };
    if (value === 'all') return { roles: ['bot', 'worker'], why: '--role all' };
    throw new Error(`unknown role ${JSON.stringify(value ?? '')}; ${USAGE}`);
  }
  const has = (names: string[]) => names.some((n) => (env[n] ?? '').trim() !== '');
  const bot = has(BOT_MARKERS);
  const worker = has(WORKER_MARKERS);
  if (worker && !bot) return { roles: ['worker'], why: 'only worker settings are configured; --role all checks everything' };
  if (bot && !worker) return { roles: ['bot'], why: 'no backend is configured here; --role all checks everything' };
  return { roles: ['bot', 'worker'], why: 'pass --role bot or --role worker to check one process' };
}

/** The fix for a configuration line, by the variable it names. */
function configFix(line: string): string {
  const name = line.split(' ')[0] ?? '';
  if (name === 'DISCORD_TOKEN')
    return 'Developer Portal → your application → Bot → Reset Token, and put it in DISCORD_TOKEN (README, "Discord set-up")';
  if (name === 'DISCORD_APP_ID') return 'Developer Portal → your application → General Information → Application ID, into DISCORD_APP_ID';
  if (name === 'BACKENDS' && line.includes('no backend'))
    return 'set A1111_URL (your GPU box), COMFYUI_URL, REPLICATE_API_TOKEN or HF_TOKEN in .env';
  return `set ${name} in .env (README, "Configuration")`;
}

function tryConfig<T>(name: string, load: () => T): T | null {
  try {
    const c = load();
    say({ ok: true, what: `${name} configuration is valid` });
    return c;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const l of err.lines) say({ ok: false, what: `${name} configuration: ${l}`, fix: configFix(l) });
    return null;
  }
}

async function checkPostgres(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    say({ ok: true, what: `Postgres reachable at ${scrubUrlCredentials(url)}` });
    // Beside this file: prisma/migrations from source, dist/prisma/migrations in the image.
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

async function checkRedis(url: string, role: Role[]): Promise<void> {
  if (role.includes('worker') && isPlaintextRemoteRedis(url)) {
    say({
      ok: true,
      warn: true,
      what: `REDIS_URL reaches ${new URL(url).host} without TLS: jobs and images cross the network in clear`,
      fix: 'use rediss:// with an ACL user (README, "A worker on the GPU box")',
    });
  }
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 3000, enableOfflineQueue: false });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    const info = await redis.info();
    const version = /redis_version:(\S+)/.exec(info)?.[1] ?? '?';
    const major = Number(version.split('.')[0]);
    say({ ok: major >= 6, what: `Redis ${version} reachable`, fix: major >= 6 ? undefined : 'BullMQ needs Redis 6.2 or newer' });
    const aof = /aof_enabled:(\d)/.exec(info)?.[1] === '1';
    // An ACL user limited to the queue's keys may not run CONFIG: then persistence is the server owner's call.
    const save = (await redis.config('GET', 'save').catch(() => undefined)) as string[] | undefined;
    const rdb = save !== undefined && save[1] !== '';
    if (aof || rdb) say({ ok: true, what: `Redis persistence on (${aof ? 'AOF' : 'RDB snapshots'})` });
    else if (save !== undefined)
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
    say({
      ok: false,
      what: `Redis not reachable at ${scrubUrlCredentials(url)}: ${(err as Error).message}`,
      fix: 'check REDIS_URL (rediss:// for TLS) and that Redis is running and reachable from here',
    });
  } finally {
    redis.disconnect();
  }
}

async function checkDiscord(config: BotConfig): Promise<void> {
  const rest = new REST({ api: config.DISCORD_API_URL, timeout: 5000, retries: 0 }).setToken(config.DISCORD_TOKEN);
  let me: { id: string; username: string };
  try {
    me = (await rest.get(Routes.user('@me'))) as { id: string; username: string };
    say({ ok: true, what: `Discord token belongs to ${me.username} (${me.id})` });
  } catch (err) {
    say({
      ok: false,
      what: `Discord token refused or Discord unreachable: ${(err as Error).message}`,
      fix: 'reset the token in the Developer Portal (Bot → Reset Token) and put it in DISCORD_TOKEN',
    });
    return;
  }
  if (me.id !== config.DISCORD_APP_ID) {
    say({
      ok: false,
      what: `DISCORD_APP_ID ${config.DISCORD_APP_ID} is not this bot's id ${me.id}`,
      fix: 'copy the Application ID from the Developer Portal (General Information) into DISCORD_APP_ID',
    });
    return;
  }
  const guild = config.DISCORD_DEV_GUILD_ID;
  try {
    const route = guild ? Routes.applicationGuildCommands(me.id, guild) : Routes.applicationCommands(me.id);
    const registered = new Set(((await rest.get(route)) as Array<{ name: string }>).map((c) => c.name));
    const missing = registrationPayload()
      .map((c) => c.name)
      .filter((n) => !registered.has(n));
    if (missing.length === 0) say({ ok: true, what: `slash commands registered (${guild ? `guild ${guild}` : 'global'})` });
    else
      say({
        ok: true,
        warn: true,
        what: `slash commands not registered yet: ${missing.map((n) => `/${n}`).join(' ')}`,
        fix: 'start the bot (it registers them) or run `npm run commands:register`',
      });
  } catch (err) {
    say({
      ok: false,
      what: `cannot read the ${guild ? `guild ${guild}` : 'global'} slash commands: ${(err as Error).message}`,
      fix: guild ? 'invite the bot to DISCORD_DEV_GUILD_ID (`npm run invite`) or unset it' : 'check DISCORD_APP_ID',
    });
  }
  say({ ok: true, what: `invite link: ${inviteUrl(me.id)}` });
}

/**
 * With linking on (LINK_REDIS_URL), the bot creates and deletes a Redis user per linked GPU box:
 * try it with a throwaway user that can do nothing.
 */
async function checkLinking(config: BotConfig): Promise<void> {
  if (!config.LINK_REDIS_URL) return;
  if (isPlaintextRemoteRedis(config.LINK_REDIS_URL))
    say({
      ok: true,
      warn: true,
      what: 'LINK_REDIS_URL reaches Redis WITHOUT TLS: linked boxes would send jobs, images and their password in clear',
      fix: 'give linked boxes a rediss:// address (README, "Running the hosted instance")',
    });
  const redis = new Redis(config.REDIS_URL, {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    connectTimeout: 3000,
    enableOfflineQueue: false,
  });
  redis.on('error', () => undefined);
  const probe = `${config.QUEUE_PREFIX}-doctor-${process.pid}`;
  try {
    await redis.connect();
    await redis.call('ACL', 'SETUSER', probe, 'reset', 'off');
    await redis.call('ACL', 'DELUSER', probe);
    say({ ok: true, what: 'the bot can create and delete Redis users for linked GPU boxes (ACL SETUSER/DELUSER)' });
  } catch (err) {
    say({
      ok: false,
      what: `the bot cannot manage Redis users, which linking GPU boxes needs: ${(err as Error).message}`,
      fix: `grant the bot's Redis user +acl|setuser +acl|deluser, or unset LINK_REDIS_URL (README, "Running the hosted instance")`,
    });
  } finally {
    redis.disconnect();
  }
}

/** A backend URL naming this machine while running in a container reaches the container, not the host. */
function insideContainerFix(config: WorkerConfig, family: string): string | undefined {
  if (!existsSync('/.dockerenv')) return undefined;
  const urls = family === 'a1111' ? config.A1111_URL : family === 'comfyui' ? config.COMFYUI_URL : [];
  const local = urls.some((u) => ['localhost', '127.0.0.1', '[::1]'].includes(new URL(u).hostname));
  return local
    ? 'inside a container 127.0.0.1 is the container itself: use http://host.docker.internal:PORT (README, "A worker on the GPU box")'
    : undefined;
}

/** Where --generate saves its images: --out DIR (or --out=DIR), else doctor-output/ here. */
function outputDir(argv: string[]): string {
  const i = argv.findIndex((a) => a === '--out' || a.startsWith('--out='));
  if (i < 0) return 'doctor-output';
  const value = argv[i]!.includes('=') ? argv[i]!.slice('--out='.length) : argv[i + 1];
  if (!value) throw new Error(`--out needs a directory; ${USAGE}`);
  return value;
}

async function checkBackends(config: WorkerConfig, generate: string | undefined): Promise<void> {
  const backends = await createBackends(config, createLogger({ level: 'silent' }));
  for (const b of backends) {
    const h = await b.health(AbortSignal.timeout(5000));
    const fix = [
      b.family === 'a1111'
        ? 'check A1111_URL/A1111_AUTH and that the web UI runs with --api --listen (README, "Pointing the worker at your GPU box")'
        : b.family === 'comfyui'
          ? 'check COMFYUI_URL and that ComfyUI runs with --listen'
          : `check the ${b.family === 'replicate' ? 'REPLICATE_API_TOKEN' : 'HF_TOKEN / HF_ENDPOINT_URL'} settings`,
      insideContainerFix(config, b.family),
    ]
      .filter(Boolean)
      .join('; ');
    say({
      ok: h.ok,
      what: `backend ${b.id}: ${h.ok ? 'healthy' : 'down'} (${h.detail}, ${Math.round(h.latencyMs)} ms)`,
      fix: h.ok ? undefined : fix,
    });
    if (generate !== undefined && h.ok) {
      let out: Awaited<ReturnType<typeof b.generate>>;
      try {
        const request = { ...parseImagineOptions({ prompt: 'a lighthouse on a cliff at dusk', steps: 12 }), width: 512, height: 512 };
        out = await b.generate({ jobId: 'doctor', request }, { signal: AbortSignal.timeout(300_000), onProgress: () => undefined });
      } catch (err) {
        say({
          ok: false,
          what: `backend ${b.id} could not make an image: ${(err as Error).message}`,
          fix: 'see the worker logs; the box may lack an SDXL checkpoint',
        });
        continue;
      }
      // Saving is its own failure (in the image /app is root's and doctor runs as node): the backend worked.
      const file = join(generate, `${b.id.replace(/[^a-z0-9]+/gi, '-')}.png`);
      try {
        await mkdir(generate, { recursive: true });
        await writeFile(file, out.images[0]!);
        say({ ok: true, what: `backend ${b.id} made an image: ${file}` });
      } catch (err) {
        say({
          ok: false,
          what: `backend ${b.id} made an image but it could not be saved in ${generate}: ${(err as Error).message}`,
          fix: 'pass --out DIR, a directory this user can write; in Docker, mount one from the host (README, "Operations")',
        });
      }
    }
  }
}

async function main(): Promise<number> {
  const envFile = loadEnvFile();
  let chosen: { roles: Role[]; why: string };
  try {
    chosen = chooseRoles(process.argv.slice(2), process.env);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 2;
  }
  let generate: string | undefined;
  try {
    generate = process.argv.includes('--generate') ? outputDir(process.argv.slice(2)) : undefined;
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 2;
  }
  const { roles, why } = chosen;
  process.stdout.write(
    `Checking ${roles.length === 2 ? 'the bot and the worker' : `the ${roles[0]}`} (${why})${envFile ? `, settings from ${envFile}` : ''}\n\n`,
  );
  const bot = roles.includes('bot') ? tryConfig('bot', () => loadConfig(botConfigSchema, process.env)) : null;
  const worker = roles.includes('worker') ? tryConfig('worker', () => loadConfig(workerConfigSchema, process.env)) : null;
  if (bot) await checkPostgres(bot.DATABASE_URL);
  await checkRedis((bot ?? worker)?.REDIS_URL ?? process.env.REDIS_URL ?? 'redis://localhost:6379', roles);
  if (bot) await checkLinking(bot);
  if (bot) await checkDiscord(bot);
  if (worker) await checkBackends(worker, generate);
  const failed = lines.filter((l) => !l.ok).length;
  process.stdout.write(failed === 0 ? '\nAll checks passed.\n' : `\n${failed} check(s) failed.\n`);
  return failed === 0 ? 0 : 1;
}

process.exit(await main());
