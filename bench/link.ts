/**
 * Linking a GPU box (/admin gpu): the join exchange (a box trading its token for its Redis user,
 * through the bot's real link service and watcher) and revocation: from the moment a moderator's
 * rotate or unlink starts to the moment the linked box loses access, seen from the box (its
 * connection closed by Redis, the first sign it gets), with a real guild worker running and two
 * probe connections as the link's user (one idle, one blocked in BZPOPMIN like BullMQ's).
 *
 *   npm run bench:link            (BENCH_RUNS=10 per figure)
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import pg from 'pg';
import { createLinkService } from '../bot/links.js';
import { LinkStore } from '../bot/store/links.js';
import { openDatabase } from '../bot/store/prisma.js';
import { loadConfig, workerConfigSchema } from '../core/config.js';
import { createLogger } from '../core/io/logger.js';
import { createRedis } from '../core/io/queue.js';
import { applyMigrations } from '../prisma/migrate.js';
import { startFakeA1111 } from '../tests/fakes/a1111.js';
import { joinWithToken } from '../worker/link.js';
import { startWorker } from '../worker/main.js';

const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const PG_ADMIN = process.env.BENCH_PG_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
const RUNS = Number(process.env.BENCH_RUNS ?? 10);
const GUILD = '4444444444444444441';
const out = (s: string) => process.stdout.write(`${s}\n`);
const f = (ms: number) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`);
const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const summary = (xs: number[]) => {
  const s = sorted(xs);
  return `median ${f(s[Math.floor(s.length / 2)]!)}, min ${f(s[0]!)}, max ${f(s[s.length - 1]!)} (${s.length} runs)`;
};

async function main(): Promise<void> {
  const prefix = `bench-link:${randomUUID().slice(0, 8)}`;
  const dbName = `imagebot_bench_link_${randomUUID().slice(0, 8)}`;
  const dbUrl = new URL(PG_ADMIN);
  dbUrl.pathname = `/${dbName}`;
  await applyMigrations(dbUrl.toString());
  const database = openDatabase(dbUrl.toString());
  const admin = new Redis(REDIS_URL);
  const service = createLinkService({
    store: new LinkStore(database),
    redis: createRedis(REDIS_URL, 'producer'),
    blocking: createRedis(REDIS_URL, 'blocking', { lazyConnect: true }),
    prefix,
    linkRedisUrl: REDIS_URL,
    log: createLogger({ level: 'silent' }),
    notify: async () => false,
  });
  service.start();
  const a1111 = await startFakeA1111({});
  const joins: number[] = [];
  const loss: Record<'rotate' | 'unlink', number[]> = { rotate: [], unlink: [] };
  const calls: Record<'rotate' | 'unlink', number[]> = { rotate: [], unlink: [] };
  try {
    for (let run = 0; run < RUNS * 2; run++) {
      const how = run % 2 === 0 ? 'rotate' : 'unlink';
      const link = await service.link(GUILD, 'bench');
      const t0 = performance.now();
      const creds = await joinWithToken(REDIS_URL, prefix, link.token);
      joins.push(performance.now() - t0);

      const worker = await startWorker(
        loadConfig(workerConfigSchema, {
          REDIS_URL: creds.redisUrl,
          QUEUE_PREFIX: prefix,
          WORKER_GUILD_ID: GUILD,
          A1111_URL: a1111.url,
          NSFW_CLASSIFIER: 'off',
        }),
        createLogger({ level: 'silent' }),
      );
      const probes = [0, 1].map(
        () => new Redis(creds.redisUrl, { enableReadyCheck: false, maxRetriesPerRequest: 0, retryStrategy: () => null }),
      );
      for (const p of probes) p.on('error', () => undefined);
      await Promise.all(probes.map((p) => p.ping()));
      const lost = probes.map((p) => new Promise<number>((resolve) => p.once('close', () => resolve(performance.now()))));
      void probes[1]!.bzpopmin(`${prefix}:g:${GUILD}:generate:marker`, 0).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 50));

      const start = performance.now();
      if (how === 'rotate') await service.rotate(GUILD, 'bench', link.linkId);
      else await service.unlink(GUILD, 'bench', link.linkId);
      calls[how].push(performance.now() - start);
      const firstLoss = Math.min(...(await Promise.all(lost)));
      loss[how].push(firstLoss - start);
      // A revoked worker's stop can wait on connections that never come back (ioredis queues QUIT
      // until it reconnects); the process's own stop is bounded by its grace period, this by 3 s.
      await Promise.race([worker.stop().catch(() => undefined), new Promise((r) => setTimeout(r, 3000))]);
      for (const p of probes) p.disconnect();
      if (how === 'rotate') await service.unlink(GUILD, 'bench', link.linkId);
    }
  } finally {
    await service.stop();
    await a1111.close();
    const users = ((await admin.call('ACL', 'USERS')) as string[]).filter((u) => u.startsWith(`${prefix}-`));
    if (users.length) await admin.call('ACL', 'DELUSER', ...users);
    let cursor = '0';
    do {
      const [next, keys] = await admin.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      if (keys.length) await admin.unlink(...keys);
      cursor = next;
    } while (cursor !== '0');
    admin.disconnect();
    await database.close();
    const pgAdmin = new pg.Client({ connectionString: PG_ADMIN });
    await pgAdmin.connect();
    await pgAdmin.query(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`);
    await pgAdmin.end();
  }
  out('Linking a GPU box (bot link service + watcher, real Redis ACL users, Postgres)');
  out(`  join exchange (token → the link's Redis user, as the box sees it): ${summary(joins)}`);
  for (const how of ['rotate', 'unlink'] as const) {
    out(`  ${how}: revoked box loses access (its connection closed by Redis) after ${summary(loss[how])}`);
    out(`  ${how}: the whole /admin gpu ${how} step (Redis and Postgres, audit row): ${summary(calls[how])}`);
  }
}

await main();
process.exit(0);
