import { Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { type WorkerConfig, workerConfigSchema } from '../core/config.js';
import type { JobKind, JobPayload, JobResult } from '../core/generation.js';
import { BudgetReservations } from '../core/io/budget-reservations.js';
import { cancelFlagKey, onCancelRequests } from '../core/io/cancel.js';
import { isEntryPoint } from '../core/io/entry.js';
import { startOpsServer } from '../core/io/http-server.js';
import { recordLinkJob } from '../core/io/link.js';
import type { Logger } from '../core/io/logger.js';
import { createMetrics } from '../core/io/metrics.js';
import { loadPresets } from '../core/io/presets-file.js';
import { runProcess } from '../core/io/process.js';
import { createRedis, GENERATE_QUEUE, workerLockOptions } from '../core/io/queue.js';
import { isPlaintextRemoteRedis } from '../core/io/redis-safety.js';
import { ResultStore } from '../core/io/results.js';
import { createThreadPool, taskModule } from '../core/io/thread-pool.js';
import { priceAttempt, secondsFor } from '../core/pricing.js';
import { GUILD_HEARTBEAT_MS } from '../core/routing.js';
import { BackendChain } from './backends/chain.js';
import { createBackends } from './backends/registry.js';
import { BoxLeases } from './boxes/leases.js';
import { BoxPool } from './boxes/pool.js';
import type { WorkerTasks } from './cpu-tasks.js';
import { PriceEstimates } from './estimates.js';
import { guildScoped, resolveLink, watchRevocation } from './link.js';
import { createProcessor, type Processor } from './processor.js';
import type { ImageClassifier } from './safety/classifier.js';
import { priceModelOf, startStatusReports } from './status.js';

export interface RunningWorker {
  worker: Worker<JobPayload, JobResult, JobKind>;
  chain: BackendChain;
  /** Publishes backend status now (it is also published every few seconds). */
  statusOnce(): Promise<void>;
  /** Stops taking jobs, hands back or finishes the running ones, closes connections. */
  stop(): Promise<void>;
}

export interface WorkerOverrides {
  /**
   * Test seam: the classifier every image and preview goes through, instead of nsfwjs (which scores
   * real pictures; a test cannot draw one it would flag). Production passes nothing.
   */
  classifier?: ImageClassifier;
  /**
   * The GPU link this worker joined with (worker/link.ts), named in its status reports and its own
   * tally of jobs, for `/admin gpu status`. Set by the entry point, not a test seam.
   */
  link?: { id: string };
}

/** One handler per job kind; a kind without one (or a handler for no kind) does not compile. */
function handlerTable(processor: Processor): Record<JobKind, Processor> {
  return { txt2img: processor, inpaint: processor, img2img: processor, upscale: processor } satisfies Record<JobKind, Processor>;
}

/** How often one connection's continuing outage is logged again. */
const REDIS_ERROR_EVERY_MS = 60_000;

/**
 * Logs a connection's errors as JSON through the logger: without a listener ioredis prints a raw
 * stack trace on every retry, unmasked. Once per outage, then at most once a minute while it lasts.
 */
function logRedisErrors(c: Redis, connection: string, log: Logger): void {
  let last = 0;
  let missed = 0;
  c.on('ready', () => {
    last = 0;
    missed = 0;
  });
  c.on('error', (err: Error) => {
    const now = Date.now();
    if (now - last < REDIS_ERROR_EVERY_MS) {
      missed++;
      return;
    }
    log.warn({ connection, error: err.message, repeatsSinceLast: missed }, 'Redis unreachable; retrying');
    last = now;
    missed = 0;
  });
}

/** Composition root of the worker: config → backends → chain → BullMQ Worker. */
export async function startWorker(given: WorkerConfig, log: Logger, overrides: WorkerOverrides = {}): Promise<RunningWorker> {
  const config = guildScoped(given);
  const link = overrides.link;
  if (isPlaintextRemoteRedis(config.REDIS_URL)) {
    log.warn(
      { redis: new URL(config.REDIS_URL).host },
      'REDIS_URL reaches another machine WITHOUT TLS: job data and images cross the network in clear. Use rediss:// (see README, "A worker on the GPU box").',
    );
  }
  if (config.WORKER_GUILD_ID) {
    log.info({ guildId: config.WORKER_GUILD_ID, space: config.QUEUE_PREFIX }, "serving one guild's own queue with its GPU boxes only");
    if (config.IGNORED_CLOUD_KEYS)
      log.warn("a guild's own worker never uses cloud providers: REPLICATE_API_TOKEN / HF_TOKEN / HF_ENDPOINT_URL are ignored");
  }
  const presets = loadPresets(config.PRESETS_FILE);
  const backends = await createBackends(config, log, presets);
  const metrics = createMetrics('worker', config.WORKER_GUILD_ID ? { guild: config.WORKER_GUILD_ID } : {});
  if (backends.length === 0) throw new Error('no usable backend');
  const prices = priceModelOf(config);
  const estimates = new PriceEstimates(prices);
  const blocking = createRedis(config.REDIS_URL, 'blocking');
  // Not a BullMQ connection (those must not auto-pipeline): the reads and writes a job makes in
  // one tick (its earlier failure and cancel flag; its images; lease checks) leave in one write.
  const plain = createRedis(config.REDIS_URL, 'blocking', { enableAutoPipelining: true });
  const subscriber = createRedis(config.REDIS_URL, 'blocking');
  for (const [name, c] of [
    ['blocking', blocking],
    ['plain', plain],
    ['subscriber', subscriber],
  ] as const)
    logRedisErrors(c, name, log);
  if (config.WORKER_GUILD_ID) watchRevocation([blocking, plain, subscriber], log);
  const pool = backends.some((b) => b.box)
    ? await BoxPool.start(new BoxLeases(plain, config.QUEUE_PREFIX, config.BOX_LEASE_MS), subscriber, log)
    : undefined;
  const chain = new BackendChain({
    backends,
    log,
    price: (b, request, seconds, images, output) => {
      estimates.observe(b.id, seconds, images);
      return priceAttempt(prices, {
        family: b.family,
        billedSeconds: seconds,
        billedImages: images,
        replicateModel: request.replicateModel,
        ...(output.usdPerImage !== undefined ? { usdPerImage: output.usdPerImage } : {}),
      });
    },
    estimate: (b, job) => estimates.job(b, job),
    secondsFor: (b, settings, usd) => secondsFor(prices, b.family, usd, b.usdPerImage?.(settings)),
    breakerThreshold: config.CIRCUIT_FAILURES,
    probeIntervalMs: config.HEALTH_PROBE_MS,
    overflowAfterS: config.OVERFLOW_AFTER_S,
    ...(pool ? { pool } : {}),
  });
  chain.startProbes();
  const results = new ResultStore(plain, config.QUEUE_PREFIX, config.RESULT_TTL_SECONDS);
  const screening = config.NSFW_CLASSIFIER !== 'off';
  const tfBackend = config.NSFW_CLASSIFIER === 'cpu' ? 'cpu' : 'auto';
  // Classification, paste-back and the grid run on threads: a busy event loop would miss the job
  // lock's renewal and another worker would run the job again. A thread holding the model stays.
  const cpu = createThreadPool<WorkerTasks>(taskModule('./cpu-tasks.js', import.meta.url), {
    threads: config.IMAGE_THREADS,
    minThreads: screening ? 1 : 0,
    idleTimeoutMs: screening ? 600_000 : 30_000,
  });
  // Start loading the model at boot; the first job waits for it only if it is not ready yet.
  const classifier: Promise<ImageClassifier> | undefined = overrides.classifier
    ? Promise.resolve(overrides.classifier)
    : screening
      ? cpu
          .run('loadClassifier', tfBackend)
          .then((backend) => ({ backend, classify: (png: Buffer) => cpu.run('classify', png, tfBackend) }))
      : undefined;
  classifier?.catch((err: unknown) => log.error({ err }, 'NSFW classifier failed to load'));
  const shutdown = new AbortController();
  const running = new Map<string, AbortController>();
  await onCancelRequests(subscriber, config.QUEUE_PREFIX, (jobId) => {
    const c = running.get(jobId);
    if (c) {
      log.info({ jobId }, 'cancel requested; interrupting');
      c.abort(new Error('cancelled by the member'));
    }
  });
  const table = handlerTable(
    createProcessor({
      chain,
      results,
      log,
      shutdown: shutdown.signal,
      running,
      cancelFlag: (jobId) => cancelFlagKey(config.QUEUE_PREFIX, jobId),
      classifier: classifier ? () => classifier : undefined,
      nsfwThreshold: config.NSFW_THRESHOLD,
      cpu,
      budgets: new BudgetReservations(plain, config.QUEUE_PREFIX),
      handBack: config.WORKER_GUILD_ID !== undefined,
    }),
  );
  const worker = new Worker<JobPayload, JobResult, JobKind>(
    GENERATE_QUEUE,
    async (job, token) => {
      const handler = table[job.name];
      if (!handler) throw new Error(`no handler for ${job.name}`);
      return handler(job, token);
    },
    {
      connection: blocking,
      prefix: config.QUEUE_PREFIX,
      concurrency: config.WORKER_CONCURRENCY,
      ...workerLockOptions(config.JOB_LOCK_MS, config.STALLED_CHECK_MS),
    },
  );
  worker.on('error', (err) => log.error({ err }, 'worker error'));
  worker.on('failed', (job, err) => log.warn({ jobId: job?.id, err }, 'job attempt failed'));
  worker.on('completed', (job, result) => {
    for (const a of result.attempts) {
      if (a.outcome === 'failed') metrics.jobFailures.inc({ backend: a.backend, kind: a.errorKind ?? 'unknown' });
      if (a.costUsd > 0) metrics.costUsd.inc({ backend: a.backend }, a.costUsd);
    }
    metrics.jobDuration.observe({ backend: result.backend, kind: job.name }, result.runMs / 1000);
    if (result.route) metrics.jobsRouted.inc({ reason: result.route.reason, backend: result.backend });
    if (link) {
      recordLinkJob(plain, config.QUEUE_PREFIX, link.id, result.model?.name, Date.now()).catch((err: unknown) =>
        log.debug({ err }, 'link tally failed'),
      );
    }
  });
  await worker.waitUntilReady();
  const ops =
    config.HTTP_PORT > 0
      ? await startOpsServer({
          port: config.HTTP_PORT,
          log,
          checks: {
            redis: async () => (await plain.ping()) === 'PONG',
            worker: async () => worker.isRunning(),
          },
          metrics: async () => {
            for (const b of backends) metrics.circuitOpen.set({ backend: b.id }, chain.circuitState(b.id) === 'closed' ? 0 : 1);
            return { contentType: metrics.registry.contentType, body: await metrics.registry.metrics() };
          },
        })
      : undefined;
  const status = startStatusReports({
    chain,
    redis: plain,
    prefix: config.QUEUE_PREFIX,
    prices,
    log,
    // A guild's box is its guild's first choice only while it reports: the bot hands its jobs on
    // when these stop for a few seconds (core/routing.ts OWN_BOX_STALE_MS).
    everyMs: config.WORKER_GUILD_ID ? GUILD_HEARTBEAT_MS : Math.max(config.HEALTH_PROBE_MS, 10_000),
    concurrency: config.WORKER_CONCURRENCY,
    presets,
    estimates,
    overflowAfterS: config.OVERFLOW_AFTER_S,
    ...(link ? { link: link.id } : {}),
  });
  log.info({ backends: backends.map((b) => b.id), concurrency: config.WORKER_CONCURRENCY }, 'worker ready');
  return {
    worker,
    chain,
    statusOnce: () => status.once(),
    async stop() {
      // Abort running backend calls so their jobs go back to the queue instead of waiting for a stall check.
      ops?.close();
      await status.stop();
      chain.stopProbes();
      shutdown.abort();
      await worker.close();
      await Promise.allSettled([blocking.quit(), plain.quit(), subscriber.quit(), cpu.close()]);
    },
  };
}

if (isEntryPoint(import.meta.url))
  await runProcess('worker', workerConfigSchema, async (config, log) => {
    const linked = await resolveLink(config, log);
    return startWorker(linked.config, log, linked.link ? { link: linked.link } : {});
  });
