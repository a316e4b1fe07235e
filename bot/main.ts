import { once } from 'node:events';
import type { Server } from 'node:http';
import { type Client, Events, Status } from 'discord.js';
import type { Redis } from 'ioredis';
import { budgetMonth } from '../core/budget.js';
import { type BotConfig, botConfigSchema } from '../core/config.js';
import type { DeliveryRetryPolicy } from '../core/delivery.js';
import { readBackendStatus } from '../core/io/backend-status.js';
import { BudgetReservations } from '../core/io/budget-reservations.js';
import { isEntryPoint } from '../core/io/entry.js';
import { startOpsServer } from '../core/io/http-server.js';
import type { ImageTasks } from '../core/io/image-tasks.js';
import type { Logger } from '../core/io/logger.js';
import { releaseMemory, releaseMemoryWhenQuiet } from '../core/io/memory.js';
import { createMetrics } from '../core/io/metrics.js';
import { loadPresets } from '../core/io/presets-file.js';
import { runProcess } from '../core/io/process.js';
import { createGenerateQueue, createRedis, GENERATE_QUEUE, QueueEvents } from '../core/io/queue.js';
import { QueuePositions } from '../core/io/queue-position.js';
import { ResultStore } from '../core/io/results.js';
import { createThreadPool, taskModule } from '../core/io/thread-pool.js';
import { adminText } from '../core/messages.js';
import type { StoredJob } from '../core/ports.js';
import { bookOnOwnBox } from '../core/pricing.js';
import { utcMonthStart } from '../core/quota.js';
import { hearsGuild } from '../core/shards.js';
import { createBudgetWatch } from './budget-watch.js';
import { createBotRest, createDiscordClient, createWebhookRest } from './client.js';
import { createGenerationService } from './generation.js';
import { createInputService } from './inputs.js';
import { createAdmissionRoute } from './jobs/admission-route.js';
import { createOutbound } from './jobs/outbound.js';
import { KeySpaces, observeSpaces } from './jobs/spaces.js';
import { createLinkService } from './links.js';
import { Notices } from './notices.js';
import { createPresetService } from './presets.js';
import { clearFormerDevGuild, syncCommands } from './register-commands.js';
import { createReports } from './reports.js';
import { startRetention } from './retention.js';
import { createRouter } from './router.js';
import { AdmissionGate } from './store/admission-gate.js';
import { PgJobStore } from './store/jobs.js';
import { LinkStore } from './store/links.js';
import { ADMISSION_SLOTS, openDatabase } from './store/prisma.js';
import { PgPrivacyStore } from './store/privacy.js';
import { SettingsStore } from './store/settings.js';
import { StatsStore } from './store/stats.js';
import { createUndeliverableNotices } from './undeliverable-notices.js';

export interface RunningBot {
  client: Client;
  /** The producer connection (tests watch the bot's Redis reads on it). */
  redis: Redis;
  stop(): Promise<void>;
}

export interface BotOverrides {
  /** Test seams for time-dependent behaviour; production passes nothing. */
  now?: () => Date;
  editIntervalMs?: number;
  tokenLifetimeMs?: number;
  sweepIntervalMs?: number;
  deliveryRetry?: DeliveryRetryPolicy;
  handoffEveryMs?: number;
  /** How long an admission may wait for the database (default core/admission-load.ts ADMISSION_WAIT_MS). */
  admissionWaitMs?: number;
  /** When a late first answer gives way to a deferral (default bot/router.ts FIRST_ANSWER_DEADLINE_MS). */
  firstAnswerDeadlineMs?: number;
}

/** After a job settles: budget alerts, and a moderator notice when an image was held back as NSFW. */
function afterSettle(o: { budgetWatch: (job: StoredJob) => Promise<void>; notices: Notices }) {
  return async (job: StoredJob): Promise<void> => {
    await o.budgetWatch(job);
    if (job.errorCode === 'unsafe') await o.notices.post(job.guildId, adminText.unsafeHeld(job.userId, job.channelId, job.id));
  };
}

/** Registers the slash commands when they changed; a failure is logged with its fix, and the bot runs on. */
async function registerAtStart(client: Client, config: BotConfig, redis: Redis, log: Logger): Promise<void> {
  const scope = config.DISCORD_DEV_GUILD_ID ? `guild ${config.DISCORD_DEV_GUILD_ID}` : 'global';
  try {
    if (!client.isReady()) return;
    const outcome = await syncCommands(client, config.DISCORD_DEV_GUILD_ID);
    log.info({ scope, outcome }, outcome === 'updated' ? 'slash commands registered' : 'slash commands already up to date');
    // The producer fails fast while it connects (no offline queue): the dev guild's record waits
    // for it, or a slow start would skip the clean-up and leave that guild its copies.
    if (redis.status !== 'ready') await Promise.race([once(redis, 'ready'), new Promise((r) => setTimeout(r, 5000).unref())]);
    const cleared = await clearFormerDevGuild(client, redis, config.QUEUE_PREFIX, config.DISCORD_DEV_GUILD_ID);
    if (cleared) log.info({ guildId: cleared }, 'removed the slash commands registered in the former DISCORD_DEV_GUILD_ID guild');
  } catch (err) {
    log.error(
      { err, scope },
      "could not register the slash commands: check that DISCORD_APP_ID is this bot's Application ID and, with DISCORD_DEV_GUILD_ID, that the bot is in that guild (npm run doctor says which)",
    );
  }
}

/** Composition root of the bot: config → logger → Postgres → Redis → Discord → router → outbound side. */
export async function startBot(config: BotConfig, log: Logger, overrides: BotOverrides = {}): Promise<RunningBot> {
  const now = overrides.now ?? (() => new Date());
  const catalog = loadPresets(config.PRESETS_FILE);
  const database = openDatabase(config.DATABASE_URL, (err) => log.warn({ err }, 'postgres connection dropped'));
  // Admissions wait in a line of their own for part of the pool; settling and delivering have a pool of their own.
  const store = new PgJobStore(database.pool, new AdmissionGate(ADMISSION_SLOTS, config.ADMISSION_MAX_WAITING, overrides.admissionWaitMs));
  const outboundStore = new PgJobStore(database.outbound);
  const producer = createRedis(config.REDIS_URL, 'producer');
  producer.on('error', (err) => log.warn({ err }, 'redis error'));
  const queue = createGenerateQueue(producer, config.QUEUE_PREFIX);
  queue.on('error', (err) => log.warn({ err }, 'queue error'));
  const eventsConn = createRedis(config.REDIS_URL, 'blocking');
  const events = new QueueEvents(GENERATE_QUEUE, { connection: eventsConn, prefix: config.QUEUE_PREFIX });
  events.on('error', (err) => log.warn({ err }, 'queue events error'));
  const results = new ResultStore(producer, config.QUEUE_PREFIX, config.RESULT_TTL_SECONDS);
  // Image work (fitting results under the upload limit, grids) runs here, off the main thread.
  const cpu = createThreadPool<ImageTasks>(taskModule('../core/io/image-tasks.js', import.meta.url), { threads: config.IMAGE_THREADS });

  const client = createDiscordClient(
    config.DISCORD_API_URL,
    config.DISCORD_SHARD_COUNT ? { shardCount: config.DISCORD_SHARD_COUNT, shards: config.DISCORD_SHARD_IDS ?? 'auto' } : {},
  );
  const botRest = createBotRest(config.DISCORD_API_URL, config.DISCORD_TOKEN);
  const webhookRest = createWebhookRest(config.DISCORD_API_URL);
  const stats = new StatsStore(database.pool);
  const budgets = new BudgetReservations(producer, config.QUEUE_PREFIX);
  const settings = new SettingsStore(
    database,
    { dailyLimit: config.DEFAULT_DAILY_IMAGES, monthlyBudgetUsd: config.DEFAULT_MONTHLY_BUDGET_USD },
    5000,
    async (guildId, usd) => {
      const at = now();
      const spent = await stats.spentInMonth(guildId, utcMonthStart(at));
      await budgets
        .seed(guildId, budgetMonth(at), usd, spent)
        .catch((err: unknown) => log.warn({ err }, 'could not refresh the budget limit'));
    },
  );
  const privacy = new PgPrivacyStore(database.pool);
  const notices = new Notices(botRest, settings, log.child({ part: 'notices' }));
  const metrics = createMetrics('bot');
  const spaces = new KeySpaces({
    redis: producer,
    redisUrl: config.REDIS_URL,
    prefix: config.QUEUE_PREFIX,
    resultTtlSeconds: config.RESULT_TTL_SECONDS,
    shared: {
      queue,
      results,
      positions: new QueuePositions(
        producer,
        {
          wait: queue.toKey('wait'),
          prioritized: queue.toKey('prioritized'),
          active: queue.toKey('active'),
          delayed: queue.toKey('delayed'),
        },
        config.QUEUE_PREFIX,
      ),
    },
    sharedBoxGuilds: config.SHARED_BOX_GUILDS,
    sealSecret: config.DISCORD_TOKEN,
    ownRecord: (jobId) => outboundStore.get(jobId),
    log: log.child({ part: 'spaces' }),
    now: Date.now,
  });
  const outbound = createOutbound({
    afterSettle: afterSettle({ budgetWatch: createBudgetWatch({ stats, settings, notices, now, log }), notices }),
    onUndeliverable: createUndeliverableNotices({ post: (guildId, content) => notices.post(guildId, content), now: Date.now }),
    deliveryRetry: overrides.deliveryRetry,
    store: outboundStore,
    results,
    spaces,
    events,
    redis: producer,
    price: async (jobId, outcome) => {
      const space = await spaces.of(jobId);
      return space.guildId === null ? outcome : bookOnOwnBox(outcome, (await settings.policy(space.guildId)).gpuUsdPerHour);
    },
    onMoved: (guildId) => metrics.jobsBySpace.inc({ guild: guildId, to: 'handoff' }),
    handoffEveryMs: overrides.handoffEveryMs,
    rest: webhookRest,
    botRest,
    log: log.child({ part: 'delivery' }),
    // Token ages compare with database timestamps, so the outbound side keeps the real clock even in tests.
    now: () => Date.now(),
    ownsGuild: (id) => client.guilds.cache.has(id),
    cpu,
    editIntervalMs: overrides.editIntervalMs,
    tokenLifetimeMs: overrides.tokenLifetimeMs,
    sweepIntervalMs: overrides.sweepIntervalMs,
  });
  const gpu = createLinkService({
    store: new LinkStore(database),
    redis: producer,
    // Its own connection: the join watcher blocks on BLPOP. Not connected unless linking is on.
    blocking: createRedis(config.REDIS_URL, 'blocking', { lazyConnect: true }),
    prefix: config.QUEUE_PREFIX,
    linkRedisUrl: config.LINK_REDIS_URL,
    log: log.child({ part: 'gpu-links' }),
    notify: (guildId, content) => notices.post(guildId, content),
  });
  const presets = createPresetService({ catalog, readStatuses: () => readBackendStatus(producer, config.QUEUE_PREFIX), now: Date.now });
  const admissionRoute = createAdmissionRoute({
    spaces,
    redis: producer,
    prefix: config.QUEUE_PREFIX,
    overflowAfterS: config.OVERFLOW_AFTER_S,
    samples: () => outbound.board.recentRuns(),
    now: Date.now,
    log,
    onRouted: (guildId, to) => metrics.jobsBySpace.inc({ guild: guildId, to }),
  });
  const route = createRouter({
    services: {
      now,
      config,
      generation: createGenerationService({
        config,
        settings,
        store,
        settles: outboundStore,
        enqueue: admissionRoute.route,
        prepareQueueing: admissionRoute.prefetch,
        lifecycle: outbound.lifecycle,
        presets,
        budgets,
        results,
        now,
        log,
      }),
      // Uploads are decoded on the same pool as results (created at start, its threads only when work comes).
      inputs: createInputService({ config, results, cpu }),
      jobs: {
        get: (jobId) => store.get(jobId),
        cancel: outbound.cancel,
        positionsOf: (jobIds) => outbound.board.positionsOf(jobIds),
        memberQuota: (guildId, userId, monthStart) => store.memberQuota(guildId, userId, monthStart),
      },
      settings,
      privacy,
      notices,
      reports: createReports({ stats, redis: producer, prefix: config.QUEUE_PREFIX, queue }),
      presets,
      gpu,
    },
    log,
    metrics,
    firstAnswerDeadlineMs: overrides.firstAnswerDeadlineMs,
  });
  client.on(Events.InteractionCreate, (interaction) => void route(interaction));
  client.on(Events.Error, (err) => log.error({ err }, 'discord client error'));
  // Jobs whose result nobody could see are cancelled and refunded rather than run, on paid providers
  // too, and then refused by Discord for minutes: the bot was removed from their guild (not an
  // outage: discord.js reports that as GuildUnavailable and keeps the guild), or their channel or
  // thread was deleted.
  const cancelGone = (where: { guildId: string } | { channelId: string }) =>
    void outbound
      .cancelOpen((job) => ('guildId' in where ? job.guildId === where.guildId : job.channelId === where.channelId))
      .then((jobs) => log.info({ ...where, jobs }, 'guild or channel gone; its open jobs were cancelled and refunded'))
      .catch((err: unknown) => log.error({ err, ...where }, 'could not cancel the jobs of a guild or channel that is gone'));
  client.on(Events.GuildDelete, (guild) => cancelGone({ guildId: guild.id }));
  client.on(Events.ChannelDelete, (channel) => cancelGone({ channelId: channel.id }));
  client.on(Events.ThreadDelete, (thread) => cancelGone({ channelId: thread.id }));
  client.on(Events.ShardDisconnect, (_e, shard) => log.warn({ shard }, 'gateway disconnected'));

  const ready = new Promise<void>((resolve) => client.once(Events.ClientReady, () => resolve()));
  await client.login(config.DISCORD_TOKEN);
  await ready;
  // Bot processes holding other shards leave registration to the one with shard 0.
  if (!config.DISCORD_SHARD_IDS || config.DISCORD_SHARD_IDS.includes(0)) await registerAtStart(client, config, producer, log);
  await outbound.start();
  // A removal while no bot process was connected is learnt from READY, which no longer lists the
  // guild (an outage still lists it, as unavailable): its open jobs are cancelled as on GUILD_DELETE.
  const shards = { count: config.DISCORD_SHARD_COUNT, ids: config.DISCORD_SHARD_IDS };
  void outbound
    .cancelOpen((job) => hearsGuild(job.guildId, shards) && !client.guilds.cache.has(job.guildId))
    .then((jobs) => jobs > 0 && log.info({ jobs }, 'open jobs of guilds the bot was removed from while away were cancelled and refunded'))
    .catch((err: unknown) => log.error({ err }, 'could not cancel the open jobs of guilds the bot has left'));
  gpu.start();
  const retention = startRetention({
    store: privacy,
    log: log.child({ part: 'retention' }),
    now: Date.now,
    retentionDays: config.RETENTION_DAYS,
  });
  client.rest.on('rateLimited', (info) => metrics.discordRateLimits.inc({ route: info.route }));
  botRest.on('rateLimited', (info) => metrics.discordRateLimits.inc({ route: info.route }));
  webhookRest.on('rateLimited', (info) => metrics.discordRateLimits.inc({ route: info.route }));
  let ops: Server | undefined;
  if (config.HTTP_PORT > 0) {
    ops = await startOpsServer({
      port: config.HTTP_PORT,
      log,
      metrics: async () => {
        await observeSpaces(spaces, producer, metrics);
        return { contentType: metrics.registry.contentType, body: await metrics.registry.metrics() };
      },
      checks: {
        redis: async () => (await producer.ping()) === 'PONG',
        postgres: async () => (await database.pool.query('SELECT 1')).rowCount === 1,
        // Each shard's own status: the manager's is set to Ready once and never reset, so it said
        // ready after Discord closed the connection for good (a reset token, a refused intent).
        gateway: async () => client.ws.shards.size > 0 && client.ws.shards.every((s) => s.status === Status.Ready),
      },
    });
  }
  log.info({ guilds: client.guilds.cache.size, user: client.user?.id }, 'bot ready');

  return {
    client,
    redis: producer,
    async stop() {
      ops?.close();
      await retention.stop();
      await gpu.stop();
      await outbound.stop();
      await client.destroy();
      await Promise.allSettled([events.close(), queue.close()]);
      await Promise.allSettled([eventsConn.quit(), producer.quit(), cpu.close()]);
      await database.close();
    },
  };
}

if (isEntryPoint(import.meta.url)) {
  await runProcess('bot', botConfigSchema, async (config, log) => {
    const bot = await startBot(config, log);
    // Start-up's heap goes back at once; a burst's once the bot is quiet again (see core/io/memory.ts).
    releaseMemory();
    releaseMemoryWhenQuiet();
    return bot;
  });
}
