import type { Redis } from 'ioredis';
import { guildSpace } from '../../core/config.js';
import type { JobFailure } from '../../core/failures.js';
import { type JobPayload, jobPayloadSchema, toJobPayload } from '../../core/generation.js';
import { readBackendStatus } from '../../core/io/backend-status.js';
import { cancelFlagKey } from '../../core/io/cancel.js';
import { takeSharedTurn } from '../../core/io/fair-share.js';
import type { Logger } from '../../core/io/logger.js';
import type { Metrics } from '../../core/io/metrics.js';
import { createGenerateQueue, createRedis, enqueueJob, GENERATE_QUEUE, type GenerateQueue, QueueEvents } from '../../core/io/queue.js';
import { QueuePositions, type QueueSnapshot } from '../../core/io/queue-position.js';
import { ResultStore } from '../../core/io/results.js';
import { type ForgottenJob, isForgotten, type StoredJob } from '../../core/ports.js';
import { memberPart, queuePriority, sharedQueuePriority } from '../../core/quota.js';
import { onlineOwnBoxes, sharedBoxesAllowed } from '../../core/routing.js';
import type { EarlierTries } from '../../core/settle.js';
import type { QueueEventSource } from './lifecycle.js';
import type { PositionReader } from './queue-board.js';
import { JobSealer } from './seal.js';

/** One key space the bot routes jobs to: the shared queue, or one guild's own (its linked boxes). */
export interface Space {
  /** null: the shared queue. */
  guildId: string | null;
  /** Its Redis prefix: QUEUE_PREFIX, or `<QUEUE_PREFIX>:g:<guildId>`. */
  prefix: string;
  queue: GenerateQueue;
  results: ResultStore;
  positions: QueuePositions;
}

interface GuildSpace extends Space {
  guildId: string;
  /** Set once its stream's present end is known. */
  events?: QueueEvents;
  connection: Redis;
  ready: Promise<unknown>;
  usedAt: number;
}

export interface KeySpacesOptions {
  /** The producer connection (queues, results, routes). */
  redis: Redis;
  redisUrl: string;
  prefix: string;
  resultTtlSeconds: number;
  shared: Omit<Space, 'guildId' | 'prefix'>;
  log: Logger;
  now: () => number;
  /** SHARED_BOX_GUILDS: guilds the operator's own boxes serve on the shared queue. */
  sharedBoxGuilds: '*' | readonly string[];
  /** A guild space nobody touched for this long has its QueueEvents closed (default 10 min). */
  idleMs?: number;
  /** DISCORD_TOKEN: the secret every bot process shares and no worker has, keying guild jobs' seals. */
  sealSecret: string;
  /**
   * The bot's own record of a job (Postgres), for a job the previous version queued on a guild's
   * queue before payloads were sealed: without it such a job is never moved (see admittedOwn).
   */
  ownRecord?: (jobId: string) => Promise<StoredJob | ForgottenJob | null>;
}

/**
 * The queues the bot routes to and which one holds each job. A guild's space is opened lazily (its
 * Queue and a QueueEvents on its own blocking connection, subscribed to the lifecycle) when a job
 * is routed there or an open job of it is touched, and closed when idle: the reconcile sweep
 * touches every open job's space, so a space with open jobs stays open. Which space holds a job is
 * kept in Redis (`<prefix>:routes`, job id → guild id; absent = shared), so any bot process, and
 * one restarted, finds it. Each process caches the answer; a job only ever moves from a guild's
 * queue to the shared one, and any process may make that move, so a cached guild is checked
 * again: when the shared queue's events name the job (followShared), or when BullMQ has no such job
 * where the cache says (jobs.getJob). Shared answers need no check, so shared jobs cost nothing more.
 */
export class KeySpaces {
  readonly shared: Space;
  private readonly guilds = new Map<string, GuildSpace>();
  private readonly routes = new Map<string, string | null>();
  private readonly routesKey: string;
  private closed = false;
  private listen: (events: QueueEventSource) => void = () => undefined;
  private readonly sealer: JobSealer;

  constructor(private readonly o: KeySpacesOptions) {
    this.shared = { guildId: null, prefix: o.prefix, ...o.shared };
    this.routesKey = `${o.prefix}:routes`;
    this.sealer = new JobSealer(o.sealSecret);
  }

  /** Subscribes the job lifecycle to every guild space's events as it opens. */
  listenWith(listen: (events: QueueEventSource) => void): void {
    this.listen = listen;
  }

  /** The guild's own space, opened if need be; resolves once its events are followed. */
  async guild(guildId: string): Promise<Space> {
    let s = this.guilds.get(guildId);
    if (!s) {
      s = this.open(guildId);
      this.guilds.set(guildId, s);
    }
    s.usedAt = this.o.now();
    try {
      await s.ready;
    } catch (err) {
      // Opened again at the next touch.
      if (this.guilds.get(guildId) === s) this.guilds.delete(guildId);
      await this.closeSpace(s);
      throw err;
    }
    return s;
  }

  /** A guild's space if it is open, without counting as a use (the handoff and /metrics look, they do not keep it open). */
  peek(guildId: string): Space | undefined {
    return this.guilds.get(guildId);
  }

  /** Spaces of guilds opened now (the handoff watches these). */
  openGuilds(): string[] {
    return [...this.guilds.keys()];
  }

  /** The space that holds a job, as this process last learnt it (see the class's note on moves). */
  async of(jobId: string): Promise<Space> {
    const guildId = this.routes.get(jobId);
    if (guildId === undefined) return this.reread(jobId);
    return guildId === null ? this.shared : this.guild(guildId);
  }

  /** The job's route as Redis holds it now, remembered. */
  private async reread(jobId: string): Promise<Space> {
    const guildId = await this.o.redis.hget(this.routesKey, jobId);
    this.routes.set(jobId, guildId);
    return guildId === null ? this.shared : this.guild(guildId);
  }

  /**
   * Follows the shared queue's events for moves other bot processes made. The mover clears the
   * route before it enqueues on the shared queue, so an event there of a job this process places
   * in a guild's queue means it was moved: this process learns it before its lifecycle reads the
   * event (subscribe first). `requeued` is told when that event is the job's arrival, so its reply
   * shows its new place as the mover's would. Guild queues' events prove nothing of the kind (an
   * old one may arrive after the move), so they are not read here.
   */
  followShared(events: QueueEventSource, requeued: (jobId: string) => void): void {
    const heard = ({ jobId }: { jobId: string }): boolean => {
      if (!this.routes.get(jobId)) return false;
      this.routes.set(jobId, null);
      return true;
    };
    events.on('waiting', (e) => {
      if (heard(e)) requeued(e.jobId);
    });
    events.on('active', heard);
    events.on('progress', heard);
    events.on('completed', heard);
    events.on('failed', heard);
    // Gone from the shared queue means settled or cancelled (nothing moves back to a guild): every
    // process forgets the route it may have read (the sweep reads every open job's), not only the
    // one that removed it, so the cache does not grow with every job the bot ever saw.
    events.on('removed', ({ jobId }) => {
      this.routes.delete(jobId);
    });
  }

  /** How many jobs' routes this process remembers (bounded by the jobs still open, see followShared). */
  get rememberedRoutes(): number {
    return this.routes.size;
  }

  /**
   * The payload and member's usage of a job read from a guild's queue, if the bot queued it there
   * itself, unaltered, and its route still names that guild; null for anything its worker wrote.
   */
  async admittedOwn(guildId: string, job: { id?: string; data: unknown }): Promise<{ payload: JobPayload; usedBefore: number } | null> {
    const usedBefore = this.sealer.verify(job.data);
    if (usedBefore === null) return this.admittedBeforeSeals(guildId, job);
    const parsed = jobPayloadSchema.safeParse(job.data);
    if (!parsed.success || parsed.data.jobId !== job.id || parsed.data.guildId !== guildId) return null;
    // A sealed payload copied back after its job settled (its route dropped) must not run again.
    if ((await this.o.redis.hget(this.routesKey, parsed.data.jobId)) !== guildId) return null;
    return { payload: parsed.data, usedBefore };
  }

  /**
   * A job with no seal at all, as the version before seals queued every guild job: moved only if the
   * bot routed it to this guild and its record there is still open, and then as the record says
   * (the request the member made), never as the queue entry says, which the guild's worker may have
   * rewritten; with the grants of a job re-queued without a fresh check (free backends, nothing
   * flagged) and the member's usage unknown (0). Such jobs are gone within the sweep's two days.
   */
  private async admittedBeforeSeals(
    guildId: string,
    job: { id?: string; data: unknown },
  ): Promise<{ payload: JobPayload; usedBefore: number } | null> {
    const data = job.data as Record<string, unknown> | null;
    if (!this.o.ownRecord || !job.id || typeof data !== 'object' || data === null || 'seal' in data) return null;
    if ((await this.o.redis.hget(this.routesKey, job.id)) !== guildId) return null;
    const record = await this.o.ownRecord(job.id).catch(() => null);
    if (!record || isForgotten(record) || record.guildId !== guildId) return null;
    if (record.status !== 'queued' && record.status !== 'running') return null;
    const payload = toJobPayload({ jobId: record.id, guildId, request: record.request }, { budgetLeftUsd: 0, nsfwAllowed: false });
    return { payload, usedBefore: 0 };
  }

  /** Records where a job is queued now (before it is added there, so its events find it). */
  async route(jobId: string, guildId: string | null): Promise<void> {
    if (guildId === null) await this.o.redis.hdel(this.routesKey, jobId);
    else await this.o.redis.hset(this.routesKey, jobId, guildId);
    this.routes.set(jobId, guildId);
  }

  /** A settled job's route is dropped with its queue entry. */
  private async unroute(jobId: string): Promise<void> {
    this.routes.delete(jobId);
    await this.o.redis.hdel(this.routesKey, jobId);
  }

  /**
   * Queues a job on the shared queue: behind every guild's earlier waiting jobs there (its guild's
   * turn, core/io/fair-share.ts), the member's usage inside the turn; the operator's boxes only if
   * SHARED_BOX_GUILDS allows the guild. `usedBefore`: the member's images of the last 24 hours before this job.
   */
  async addShared(payload: JobPayload, usedBefore: number, o: { fresh?: boolean } = {}): Promise<void> {
    const guildId = payload.guildId ?? '';
    const turn = await takeSharedTurn(this.o.redis, {
      prefix: this.o.prefix,
      prioritizedKey: this.shared.queue.toKey('prioritized'),
      guildId,
      jobId: payload.jobId,
      now: this.o.now(),
      memberPart: memberPart(usedBefore),
    });
    // A job new from admission has no route to clear (shared is the default); one moved here from a guild's queue has.
    if (o.fresh) this.routes.set(payload.jobId, null);
    else await this.route(payload.jobId, null);
    await enqueueJob(this.shared.queue, this.forShared(payload), sharedQueuePriority(turn, usedBefore));
  }

  /** The payload as the shared queue carries it: the operator's boxes only for the guilds SHARED_BOX_GUILDS allows. */
  private forShared(payload: JobPayload): JobPayload {
    const { boxesAllowed: _own, seal: _seal, ...rest } = payload;
    return sharedBoxesAllowed(this.o.sharedBoxGuilds, payload.guildId ?? '') ? rest : { ...rest, boxesAllowed: false };
  }

  /** Queues a job on its guild's own queue (member fairness inside the guild, as ever). */
  async addOwn(payload: JobPayload, guildId: string, usedBefore: number): Promise<void> {
    const space = await this.guild(guildId);
    await this.route(payload.jobId, guildId);
    await enqueueJob(space.queue, this.sealer.seal(payload, usedBefore), queuePriority(usedBefore));
  }

  /** BullMQ's view of a job in whichever queue holds it (JobStates, and cancel's view). */
  readonly jobs = {
    getJob: async (jobId: string) => {
      const s = await this.of(jobId);
      const job = await s.queue.getJob(jobId);
      if (job) return job;
      // Not where this process thought: another process may have moved it (or routed it after this one read its route).
      const now = await this.reread(jobId);
      return now === s ? undefined : ((await now.queue.getJob(jobId)) ?? undefined);
    },
    remove: async (jobId: string) => {
      const s = await this.of(jobId);
      await s.queue.remove(jobId);
      if (s.guildId !== null) await this.unroute(jobId);
      // A shared job's route is only remembered here (absent in Redis means shared): forgotten with it.
      else this.routes.delete(jobId);
    },
    /** A re-enqueue of a lost job goes to the shared queue, which every guild may use. */
    add: async (...[name, data, opts]: Parameters<GenerateQueue['add']>) => {
      if (opts?.jobId) await this.route(opts.jobId, null);
      return this.shared.queue.add(name, this.forShared(data), opts);
    },
  };

  /** Queue places of many jobs, each read in the queue that holds it. */
  readonly positions: PositionReader = {
    read: async (jobIds) => {
      const bySpace = new Map<Space, string[]>();
      for (const id of jobIds) {
        const s = await this.of(id);
        bySpace.set(s, [...(bySpace.get(s) ?? []), id]);
      }
      // The shared queue's snapshot gives the counts and reports; guild jobs add their places.
      const shared = await this.shared.positions.read(bySpace.get(this.shared) ?? []);
      const places = new Map(shared.places);
      for (const [s, ids] of bySpace) {
        if (s === this.shared) continue;
        const snap: QueueSnapshot = await s.positions.read(ids);
        for (const [id, p] of snap.places) places.set(id, p);
      }
      return { ...shared, places };
    },
  };

  /**
   * The result keys of a job in the space this process knows holds it (its route, set at admission,
   * read by the sweep or learnt from the shared queue's events; the shared space otherwise), for the
   * checks that a worker's result and preview name only that job's own keys there.
   */
  resultsOf(jobId: string): ResultStore {
    const guildId = this.routes.get(jobId);
    if (!guildId) return this.shared.results;
    return this.guilds.get(guildId)?.results ?? new ResultStore(this.o.redis, guildSpace(this.o.prefix, guildId), this.o.resultTtlSeconds);
  }

  /** The failure record a worker left for a job, in the space that ran it. */
  async failureOf(jobId: string): Promise<JobFailure | null> {
    return (await this.of(jobId)).results.getFailure(jobId);
  }

  /** What a job's earlier tries billed (failure record, kept paid result), in the space that holds it. */
  async earlierTriesOf(jobId: string): Promise<EarlierTries> {
    return (await this.of(jobId)).results.earlierTries(jobId);
  }

  /** The key of a job's cancel flag, in the space that holds it (where the cancel sets it). */
  async cancelFlagOf(jobId: string): Promise<string> {
    return cancelFlagKey((await this.of(jobId)).prefix, jobId);
  }

  /** Closes guild spaces nobody touched for idleMs. */
  async closeIdle(): Promise<void> {
    const idleMs = this.o.idleMs ?? 600_000;
    for (const [guildId, s] of this.guilds) {
      if (this.o.now() - s.usedAt < idleMs) continue;
      this.guilds.delete(guildId);
      await this.closeSpace(s);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.guilds.values()];
    this.guilds.clear();
    await Promise.allSettled(all.map((s) => this.closeSpace(s)));
  }

  private async closeSpace(s: GuildSpace): Promise<void> {
    await Promise.allSettled([s.events?.close(), s.queue.close()]);
    await s.connection.quit().catch(() => undefined);
  }

  private open(guildId: string): GuildSpace {
    if (this.closed) throw new Error('key spaces closed');
    const prefix = guildSpace(this.o.prefix, guildId);
    const queue = createGenerateQueue(this.o.redis, prefix);
    queue.on('error', (err) => this.o.log.warn({ err, guildId }, 'guild queue error'));
    const connection = createRedis(this.o.redisUrl, 'blocking');
    connection.on('error', (err) => this.o.log.warn({ err, guildId }, 'guild events connection error'));
    const eventsKey = queue.toKey('events');
    const space = { guildId, prefix, queue, connection, usedAt: this.o.now() } as GuildSpace;
    space.results = new ResultStore(this.o.redis, prefix, this.o.resultTtlSeconds);
    space.positions = new QueuePositions(
      this.o.redis,
      {
        wait: queue.toKey('wait'),
        prioritized: queue.toKey('prioritized'),
        active: queue.toKey('active'),
        delayed: queue.toKey('delayed'),
      },
      prefix,
    );
    // Events are read from the stream's present end, known before anything is routed here, so no
    // event of a job routed after this resolves can be missed (BullMQ's default '$' would race).
    space.ready = this.o.redis.xrevrange(eventsKey, '+', '-', 'COUNT', 1).then((last) => {
      const events = new QueueEvents(GENERATE_QUEUE, { connection, prefix, lastEventId: last[0]?.[0] ?? '0-0' });
      events.on('error', (err) => this.o.log.warn({ err, guildId }, 'guild queue events error'));
      // Gone from the guild's queue (settled, cancelled or moved, by whichever bot process): every
      // process that still places the job there forgets it, as for the shared queue (followShared).
      events.on('removed', ({ jobId }) => {
        if (this.routes.get(jobId) === guildId) this.routes.delete(jobId);
      });
      space.events = events;
      this.listen(events);
      return events.waitUntilReady();
    });
    space.ready.catch((err: unknown) => this.o.log.warn({ err, guildId }, 'could not follow a guild queue'));
    return space;
  }
}

/** /metrics: each open space's queue by state, and each open guild's own boxes reporting in. */
export async function observeSpaces(
  spaces: KeySpaces,
  redis: Redis,
  metrics: Pick<Metrics, 'queueJobs' | 'ownBoxes'>,
  now = Date.now(),
): Promise<void> {
  const all: Space[] = [spaces.shared];
  for (const g of spaces.openGuilds()) {
    const s = spaces.peek(g);
    if (s) all.push(s);
  }
  for (const s of all) {
    const counts = await s.queue.getJobCounts('waiting', 'prioritized', 'active', 'delayed', 'failed');
    for (const [state, n] of Object.entries(counts)) metrics.queueJobs.set({ state, space: s.guildId ?? 'shared' }, n);
    if (s.guildId !== null) metrics.ownBoxes.set({ guild: s.guildId }, onlineOwnBoxes(await readBackendStatus(redis, s.prefix), now));
  }
}
