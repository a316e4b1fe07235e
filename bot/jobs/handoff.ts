import type { Redis } from 'ioredis';
import { readBackendStatus } from '../../core/io/backend-status.js';
import type { Logger } from '../../core/io/logger.js';
import { GUILD_HEARTBEAT_MS, onlineOwnBoxes } from '../../core/routing.js';
import type { JobLifecycle } from './lifecycle.js';
import type { KeySpaces, Space } from './spaces.js';

export interface HandoffOptions {
  spaces: KeySpaces;
  redis: Redis;
  lifecycle: Pick<JobLifecycle, 'moving' | 'requeued'>;
  log: Logger;
  now: () => number;
  /** How often the open guild spaces are checked (default 1 s). */
  everyMs?: number;
  /** Jobs moved to the shared queue, by guild and why. */
  onMoved?: (guildId: string, why: 'box_gone' | 'handed_back') => void;
}

/**
 * Handoff from a guild's own boxes to the shared queue. When a guild's boxes stop reporting (worker
 * dead, box gone, every circuit open) for core/routing.ts OWN_BOX_STALE_MS, its waiting jobs, its
 * delayed ones (a retry's backoff, or a job a stopping worker handed back: no worker there would
 * ever take them) and any running one whose worker lost its lock are moved; a job its worker gave back (`handed_back`)
 * is moved when its failure is heard. A move removes the job from the guild's queue first, and
 * BullMQ refuses to remove a job a live worker holds (its lock), so a job is moved or run, never
 * both; it keeps its id, payload and member's usage, and its reply follows it. Only jobs the bot sealed
 * there move (KeySpaces.admittedOwn): the guild's worker can write any job into its queue; one the
 * version before seals queued there moves as the bot's record of it says.
 */
export class Handoff {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  /** When each open guild space was first seen without a usable box. */
  private readonly offlineSince = new Map<string, number>();
  /** Jobs already reported as not the bot's (see warnOnce). */
  private readonly unsealed = new Set<string>();

  constructor(private readonly o: HandoffOptions) {}

  start(): void {
    this.timer = setInterval(() => void this.check(), this.o.everyMs ?? 1000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }

  /** One pass over the open guild spaces (a pass under way is joined). */
  check(): Promise<void> {
    this.running ??= this.checkOnce()
      .catch((err: unknown) => this.o.log.warn({ err }, 'handoff check failed'))
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  /** Moves a job its guild's worker gave back (failure code handed_back) to the shared queue. */
  async handBack(jobId: string): Promise<void> {
    const space = await this.o.spaces.of(jobId);
    if (space.guildId === null) return;
    await this.move(space, jobId, 'handed_back');
  }

  private async checkOnce(): Promise<void> {
    const now = this.o.now();
    const open = this.o.spaces.openGuilds();
    for (const g of this.offlineSince.keys()) if (!open.includes(g)) this.offlineSince.delete(g);
    for (const guildId of open) {
      const space = this.o.spaces.peek(guildId);
      if (!space) continue;
      const reports = await readBackendStatus(this.o.redis, space.prefix);
      if (onlineOwnBoxes(reports, now) > 0) {
        this.offlineSince.delete(guildId);
        continue;
      }
      // One unhealthy report (a health check that timed out once) is not a box gone: it must stay
      // so for a heartbeat; a box that stopped reporting has been silent for the stale window already.
      const since = this.offlineSince.get(guildId) ?? now;
      this.offlineSince.set(guildId, since);
      if (now - since < GUILD_HEARTBEAT_MS) continue;
      const jobs = await space.queue.getJobs(['prioritized', 'waiting', 'delayed', 'active'], 0, 199);
      for (const job of jobs) {
        if (!job.id) continue;
        await this.move(space, job.id, 'box_gone');
      }
    }
    await this.o.spaces.closeIdle();
  }

  private async move(space: Space, jobId: string, why: 'box_gone' | 'handed_back'): Promise<boolean> {
    const job = await space.queue.getJob(jobId);
    if (!job || space.guildId === null) return false;
    // The guild's worker may write any job into its queue: only one the bot sealed there is moved,
    // with the grants and usage the bot gave it (never job.opts, which that worker may rewrite).
    const own = await this.o.spaces.admittedOwn(space.guildId, job);
    if (!own) {
      this.warnOnce(space.guildId, jobId);
      return false;
    }
    this.o.lifecycle.moving(jobId, true);
    try {
      // Refused while a live worker holds the job (its lock): then it runs there, and is not moved.
      await job.remove();
    } catch {
      this.o.lifecycle.moving(jobId, false);
      return false;
    }
    await this.o.spaces.addShared(own.payload, own.usedBefore);
    this.o.log.info({ jobId, guildId: space.guildId, why }, "moved from the guild's own boxes to the shared queue");
    if (space.guildId) this.o.onMoved?.(space.guildId, why);
    this.o.lifecycle.requeued(jobId);
    return true;
  }

  /** Each unsealed job is reported once (the check runs every second), the memory bounded. */
  private warnOnce(guildId: string, jobId: string): void {
    const key = `${guildId}:${jobId}`;
    if (this.unsealed.has(key)) return;
    if (this.unsealed.size >= 1000) this.unsealed.delete(this.unsealed.values().next().value!);
    this.unsealed.add(key);
    this.o.log.warn({ jobId, guildId }, "a job in a guild's own queue the bot did not queue there (or altered): left there, not moved");
  }
}
