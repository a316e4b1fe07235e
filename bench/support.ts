/**
 * What the benches share: where Redis and Postgres are, a migrated database of a run's own, our entry
 * points started as a user starts them, percentiles, and leaving Redis clean afterwards.
 * Every bench honours BENCH_DIST=1 (the compiled build), BENCH_PROF=<dir> (CPU profiles of the
 * processes it starts; BENCH_PROF_INTERVAL=<µs> samples finer than the default 1000, to see one
 * job's few milliseconds step by step) and BENCH_LOGS=<dir> (their log lines).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { applyMigrations, ensureDatabase } from '../prisma/migrate.js';
import { emptyCwd, ROOT, sourceEntryArgs } from '../tests/setup/processes.js';

export const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const PG_ADMIN = process.env.BENCH_PG_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';

/** What our bot and worker need against the fakes: the fake Discord, a run's database, Redis under a run's prefix. */
export function systemEnv(o: { discordApiUrl: string; databaseUrl: string; prefix: string }): Record<string, string> {
  return {
    DISCORD_TOKEN: 'fake-token',
    DISCORD_APP_ID: '1111111111111111111',
    DISCORD_API_URL: o.discordApiUrl,
    DATABASE_URL: o.databaseUrl,
    REDIS_URL,
    QUEUE_PREFIX: o.prefix,
  };
}

/** The p-quantile (0..1) of xs; NaN when there are none. */
export const pct = (xs: number[], p: number): number =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))] ?? Number.NaN;

/** A migrated database for one run, named after the bench; drop() removes it. */
export async function benchDatabase(name: string): Promise<{ url: string; drop(): Promise<void> }> {
  const dbName = `imagebot_bench_${name}_${Date.now()}`;
  const url = new URL(PG_ADMIN);
  url.pathname = `/${dbName}`;
  await ensureDatabase(url.toString());
  await applyMigrations(url.toString());
  return {
    url: url.toString(),
    async drop() {
      const admin = new pg.Client({ connectionString: PG_ADMIN });
      await admin.connect();
      await admin.query(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`);
      await admin.end();
    },
  };
}

/** How a bench starts one of our processes (spawnReady). */
export interface SpawnOptions {
  /** Run with the node flags of the Dockerfile's CMD (the bot's, as deployed), so its memory and CPU are measured as they run there. */
  deployedFlags?: boolean;
  /** Write a V8 CPU profile of the process to this directory on exit (default: BENCH_PROF). */
  cpuProfDir?: string;
  /** Keep the process's log lines in `<dir>/<which>-<pid>.log` (default: BENCH_LOGS); without it they are read and dropped. */
  logsDir?: string;
}

/** The node flags the image runs the bot with (the Dockerfile's CMD). */
export async function deployedNodeFlags(): Promise<string[]> {
  const cmd = /^CMD (\[.*\])$/m.exec(await readFile(join(ROOT, 'Dockerfile'), 'utf8'));
  return cmd ? (JSON.parse(cmd[1]!) as string[]).filter((a) => a.startsWith('--')) : [];
}

/**
 * Starts bot/main.ts or worker/main.ts and resolves once it logs that it is ready. BENCH_DIST=1 runs
 * the compiled build (npm run build), as the Docker image does. An empty working directory keeps a
 * developer's .env away from the measured processes; the child dies with the bench.
 */
export async function spawnReady(
  which: 'bot' | 'worker',
  env: Record<string, string>,
  o: SpawnOptions = {},
): Promise<{ child: ChildProcess; readyAt: number }> {
  const profDir = o.cpuProfDir ?? process.env.BENCH_PROF;
  const logsDir = o.logsDir ?? process.env.BENCH_LOGS;
  const flags = [
    ...(o.deployedFlags ? await deployedNodeFlags() : []),
    ...(profDir
      ? ['--cpu-prof', '--cpu-prof-dir', resolve(profDir), '--cpu-prof-interval', process.env.BENCH_PROF_INTERVAL ?? '1000']
      : []),
  ];
  const entry = process.env.BENCH_DIST ? [join(ROOT, `dist/${which}/main.js`)] : sourceEntryArgs(`${which}/main.ts`);
  const child = spawn(process.execPath, [...flags, ...entry], {
    cwd: emptyCwd(),
    // The ready line is logged at info.
    env: { ...process.env, ...env, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  // A failed run must not leave processes behind holding the terminal.
  process.once('exit', () => child.kill('SIGKILL'));
  const logs = logsDir ? createWriteStream(join(logsDir, `${which}-${child.pid}.log`)) : null;
  const readyAt = await new Promise<number>((resolve, reject) => {
    let buf = '';
    const onData = (c: Buffer) => {
      buf += c.toString();
      if (!buf.includes(`"${which} ready"`)) return;
      // Stop collecting: the logs of a 1000-job burst would make this process the bottleneck.
      child.stdout!.off('data', onData);
      logs?.write(buf);
      resolve(Date.now());
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${which} exited ${code}`)));
  });
  if (logs) child.stdout!.pipe(logs);
  else child.stdout!.resume();
  return { child, readyAt };
}

/** Deletes every Redis key under a run's prefix. */
export async function clearPrefix(prefix: string): Promise<void> {
  const r = new Redis(REDIS_URL);
  let cursor = '0';
  do {
    const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    if (keys.length) await r.unlink(...keys);
    cursor = next;
  } while (cursor !== '0');
  await r.quit();
}
