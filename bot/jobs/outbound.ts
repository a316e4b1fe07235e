import type { REST } from 'discord.js';
import type { Redis } from 'ioredis';
import type { DeliveryRetryPolicy } from '../../core/delivery.js';
import { requestCancel } from '../../core/io/cancel.js';
import type { ImageTasks } from '../../core/io/image-tasks.js';
import type { Logger } from '../../core/io/logger.js';
import type { ResultStore } from '../../core/io/results.js';
import type { ThreadPool } from '../../core/io/thread-pool.js';
import type { JobStore, StoredJob, SweepCursor } from '../../core/ports.js';
import type { SettleOutcome } from '../../core/settle.js';
import { type CancelAnswer, createCancel } from './cancel.js';
import { Handoff } from './handoff.js';
import { JobLifecycle, type QueueEventSource } from './lifecycle.js';
import { Outbox } from './outbox.js';
import { PostResult } from './post-result.js';
import { DURATION_WINDOW, QueueBoard } from './queue-board.js';
import { Reconciler } from './reconcile.js';
import type { KeySpaces } from './spaces.js';

export interface OutboundOptions {
  store: JobStore;
  results: ResultStore;
  /** The shared queue and every guild's own (bot/jobs/spaces.ts): where each job is, its places, its failure. */
  spaces: KeySpaces;
  events: QueueEventSource & { waitUntilReady(): Promise<unknown> };
  /** Books an outcome where the job ran (a guild's own box: core/pricing.ts bookOnOwnBox). */
  price?: (jobId: string, outcome: SettleOutcome) => Promise<SettleOutcome>;
  /** Jobs moved from a guild's own boxes to the shared queue. */
  onMoved?: (guildId: string, why: 'box_gone' | 'handed_back') => void;
  /** How often guild spaces are checked for a vanished box (default 1 s). */
  handoffEveryMs?: number | undefined;
  /** The producer connection: cancel requests to the workers, the guild boxes' reports. */
  redis: Redis;
  /** REST for interaction webhooks (edits of the reply); exempt from the global limit. */
  rest: REST;
  /** REST with the bot token for channel messages, under the global limit. */
  botRest: REST;
  log: Logger;
  now: () => number;
  ownsGuild: (guildId: string) => boolean;
  /** The bot's thread pool, for fitting results under the upload limit and gridding off the main thread. */
  cpu: Pick<ThreadPool<ImageTasks>, 'run'>;
  afterSettle?: (job: StoredJob) => Promise<void>;
  /** Posting a job was given up (recorded as undeliverable, refunded): tell its guild's moderators. */
  onUndeliverable?: (job: StoredJob, reason: string) => Promise<void>;
  /** When failed posts are tried again (default core/delivery.ts DELIVERY_RETRY). */
  deliveryRetry?: DeliveryRetryPolicy | undefined;
  editIntervalMs?: number | undefined;
  tokenLifetimeMs?: number | undefined;
  sweepIntervalMs?: number | undefined;
}

const CANCEL_PAGE = 500;

/** The bot's outbound side, wired: what the composition root starts and stops. */
export interface Outbound {
  lifecycle: JobLifecycle;
  board: QueueBoard;
  cancel: (jobId: string) => Promise<CancelAnswer>;
  /**
   * Cancels, as the member's Cancel would (refunded; a running one is interrupted), every job not
   * yet settled that `where` picks; resolves to how many. For jobs whose result nobody could see:
   * the bot was removed from their guild, or their channel was deleted.
   */
  cancelOpen(where: (job: StoredJob) => boolean): Promise<number>;
  /** Subscribes to the queue's events, then reconciles whatever happened while no bot was listening. */
  start(): Promise<void>;
  /** Stops sweeping, refreshing and editing; waits for deliveries under way. */
  stop(): Promise<void>;
}

export function createOutbound(o: OutboundOptions): Outbound {
  const tokenLifetimeMs = o.tokenLifetimeMs ?? 14 * 60_000;
  const outbox = new Outbox({ rest: o.rest, botRest: o.botRest, log: o.log, now: o.now, tokenLifetimeMs });
  const board = new QueueBoard({ positions: o.spaces.positions, log: o.log, now: o.now, ownsGuild: o.ownsGuild });
  const post = new PostResult({
    store: o.store,
    results: o.results,
    outbox,
    log: o.log,
    now: o.now,
    afterSettle: o.afterSettle,
    onUndeliverable: o.onUndeliverable,
    retry: o.deliveryRetry,
    cpu: o.cpu,
  });
  let handoff: Handoff | undefined;
  const lifecycle = new JobLifecycle({
    store: o.store,
    results: {
      get: (k) => o.results.get(k),
      getMany: (k) => o.results.getMany(k),
      getFailure: (id) => o.spaces.failureOf(id),
      previewKey: (id) => o.spaces.resultsOf(id).previewKey(id),
      ownsResultKeys: (id, result) => o.spaces.resultsOf(id).ownsResultKeys(id, result),
    },
    queue: o.spaces.jobs,
    handBack: (jobId) => handoff?.handBack(jobId) ?? Promise.resolve(),
    ...(o.price ? { price: o.price } : {}),
    board,
    post,
    edits: outbox,
    log: o.log,
    now: o.now,
    ownsGuild: o.ownsGuild,
    cancelFlag: (id) => o.spaces.cancelFlagOf(id),
    editIntervalMs: o.editIntervalMs,
    tokenLifetimeMs,
  });
  handoff = new Handoff({
    spaces: o.spaces,
    redis: o.redis,
    lifecycle,
    log: o.log,
    now: o.now,
    everyMs: o.handoffEveryMs,
    onMoved: o.onMoved,
  });
  o.spaces.listenWith((events) => lifecycle.listen(events));
  const reconciler = new Reconciler({
    store: o.store,
    queue: o.spaces.jobs,
    positions: o.spaces.positions,
    lifecycle,
    earlierTries: (jobId) => o.spaces.earlierTriesOf(jobId),
    log: o.log,
    now: o.now,
    sweepIntervalMs: o.sweepIntervalMs,
  });
  const cancel = createCancel({
    queue: o.spaces.jobs,
    settle: (jobId, outcome) => lifecycle.settle(jobId, outcome),
    requestCancel: async (jobId) => requestCancel(o.redis, (await o.spaces.of(jobId)).prefix, jobId),
    earlierTries: (jobId) => o.spaces.earlierTriesOf(jobId),
  });
  return {
    lifecycle,
    board,
    cancel,
    async cancelOpen(where) {
      const open: string[] = [];
      // The sweep's own index of jobs not yet delivered; such a clean-up is rare, so a full pass is fine.
      for (let after: SweepCursor | null = null; ; ) {
        const page = await o.store.listUndelivered(after, CANCEL_PAGE);
        for (const j of page) if ((j.status === 'queued' || j.status === 'running') && where(j)) open.push(j.id);
        const last = page.at(-1);
        if (page.length < CANCEL_PAGE || !last) break;
        after = { createdAt: last.createdAt, id: last.id };
      }
      for (const jobId of open) await cancel(jobId);
      return open.length;
    },
    async start() {
      // Before the lifecycle's own listeners: a job another process moved is settled from where it is now.
      o.spaces.followShared(o.events, (jobId) => lifecycle.requeued(jobId));
      lifecycle.listen(o.events);
      // The ETA needs durations from the first job on; a bot restart must not forget them.
      try {
        board.seed(
          (await o.store.recentRunTimes(DURATION_WINDOW)).map((r) => ({
            ms: r.ms,
            count: r.count,
            ...(r.backend ? { backend: r.backend } : {}),
          })),
        );
      } catch (err) {
        o.log.warn({ err }, 'could not read recent job durations; ETAs start empty');
      }
      await o.events.waitUntilReady();
      await reconciler.start();
      handoff.start();
    },
    async stop() {
      // Every room stops taking new work at once; then what is under way finishes, deliveries last.
      const sweeps = reconciler.stop();
      const moves = handoff.stop();
      const edits = lifecycle.stop();
      await sweeps;
      await moves;
      await edits;
      await post.drain();
      await o.spaces.close();
    },
  };
}
