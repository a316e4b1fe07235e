import type { GenerationRequest, JobKind, JobResult, ModelLineage } from './generation.js';
import type { NsfwMode } from './policy.js';
import type { QuotaFacts, Refusal } from './quota.js';
import type { SettleOutcome } from './settle.js';

/** Who asked, where: plain ids, never discord.js objects. */
export interface Actor {
  guildId: string;
  channelId: string;
  userId: string;
  channelNsfw: boolean;
}

/** Discord handles needed to answer the member later (token valid 15 minutes). */
export interface InteractionRef {
  applicationId: string;
  interactionId: string;
  token: string;
  /** Largest file the channel accepts (Discord's attachment_size_limit); results are fitted under it. */
  uploadLimitBytes?: number;
}

export interface ReserveInput {
  actor: Actor;
  interaction: InteractionRef;
  request: GenerationRequest;
  /** UTC day (YYYY-MM-DD) the images count against. */
  day: string;
  deploymentDailyLimit: number;
  maxInFlight: number;
  parentJobId?: string;
  /** First day of the UTC month (YYYY-MM-DD), for the paid-provider budget. */
  monthStart: string;
  deploymentMonthlyBudgetUsd: number;
}

export type ReserveOutcome =
  | {
      ok: true;
      jobId: string;
      usedToday: number;
      /** The member's images counted on the day before `day` (core/quota.ts recentImages: their turn in the queue). */
      prevDayImages: number;
      limit: number;
      budgetLeftUsd: number;
      budgetUsd: number;
      spentUsd: number;
    }
  | { ok: false; reason: Refusal; usedToday: number; limit: number; inFlight: number }
  /** Not tried: the bot is too busy to admit it now (core/admission-load.ts); nothing was reserved. */
  | { ok: false; reason: 'busy' };

/** A job whose message(s) reached Discord: the result's message id (null: nothing was posted) and its follow-ups. */
export interface Delivered {
  jobId: string;
  messageId: string | null;
  extraIds?: readonly string[];
}

/** What /quota shows a member: the facts the quota rules decide on, this month's images and the jobs under way. */
export interface MemberQuota {
  facts: QuotaFacts;
  usedThisMonth: number;
  queued: { id: string; status: string; prompt: string; createdAt: Date }[];
}

export interface StoredJob {
  id: string;
  guildId: string;
  channelId: string;
  userId: string;
  kind: JobKind;
  status: 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
  request: GenerationRequest;
  imageCount: number;
  channelNsfw: boolean;
  interaction: InteractionRef;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  deliveredAt: Date | null;
  backend: string | null;
  costUsd: number;
  errorCode: string | null;
  errorMessage: string | null;
  result: JobResult | null;
  replyMessageId: string | null;
  resultMessageId: string | null;
  /** Further messages of a result split over several; deleted with the first. */
  resultExtraIds: string[];
  /** What made the images (lineage), once it succeeded: as the backend reported it. */
  model?: ModelLineage | null;
  sampler?: string | null;
  /** Failed tries at posting it so far (core/delivery.ts decides what follows). */
  deliveryAttempts: number;
}

/**
 * A job whose prompt, parameters and message references were erased (by the member's /forget or by
 * retention): what is left is what the guild's totals and the member's quota need.
 */
export interface ForgottenJob {
  id: string;
  guildId: string;
  channelId: string;
  userId: string;
  kind: JobKind;
  status: StoredJob['status'];
  imageCount: number;
  backend: string | null;
  costUsd: number;
  createdAt: Date;
  forgottenAt: Date;
  forgottenReason: 'member' | 'retention';
}

export function isForgotten(job: StoredJob | ForgottenJob): job is ForgottenJob {
  return 'forgottenAt' in job;
}

/** Where the sweep has read up to: the last job of a page (keyset pagination). */
export interface SweepCursor {
  createdAt: Date;
  id: string;
}

/**
 * Persistence of jobs and member usage. Each method is one atomic statement; the guarantees
 * (no overshoot, charge or refund once) hold under any concurrency and any number of retries.
 */
export interface JobStore {
  /** Reserves `request.count` images and records the job, or refuses without changing anything. */
  reserve(input: ReserveInput): Promise<ReserveOutcome>;
  /** queued → running for the jobs still queued, with the time each was seen to start; one statement for all. */
  markRunning(started: readonly { jobId: string; at: Date }[]): Promise<void>;
  /**
   * queued|running → final status, books every attempt in the ledger, refunds on failure/cancel,
   * and claims delivery for the caller. Returns the job if this call settled it, null if it was settled already.
   */
  settle(jobId: string, outcome: SettleOutcome): Promise<StoredJob | null>;
  /** A queued job's request as it finally is once its input images are prepared (an /inpaint's size); false when it is no longer queued. */
  setRequest(jobId: string, request: GenerationRequest): Promise<boolean>;
  /** Claims delivery of a settled, undelivered job (after a restart); null when someone else holds it. */
  claimDelivery(jobId: string, staleAfterMs: number): Promise<StoredJob | null>;
  /** Delivered: the jobs' messages are posted (one statement for all of them). */
  markDelivered(delivered: readonly Delivered[]): Promise<void>;
  /** The parts of a split result posted so far, recorded as each lands so a later try resumes after them. */
  notePosted(jobId: string, messageId: string, extraIds: readonly string[]): Promise<void>;
  /** The interaction reply's message id, so a late channel post can reply to it. */
  rememberReply(jobId: string, messageId: string): Promise<void>;
  /** Lets another process retry a delivery that failed here. */
  releaseDelivery(jobId: string): Promise<void>;
  /**
   * A try at posting failed: records it, Discord's answer and when the next try is due, and releases
   * the claim; the sweep claims it again no earlier than `nextAt`.
   */
  deferDelivery(jobId: string, tries: number, nextAt: Date, error: string): Promise<void>;
  /**
   * Posting is given up: the job is recorded as undeliverable (a success becomes a failure, so the
   * member's images are refunded; the ledger keeps what was billed) and its interaction token is
   * erased. Returns the job as it was, or null when it was delivered or given up meanwhile.
   */
  giveUpDelivery(jobId: string, error: string): Promise<StoredJob | null>;
  /**
   * A success that cannot be posted after all: its images left Redis (Redis lost them, say, while
   * Discord was failing), the default `expired`, or the output limits refuse them (`invalid_payload`).
   * It becomes a failure as `failure` says, so the member's images are refunded as the posted
   * message says (the ledger keeps what ran). Returns the job as it is now, or null when it is not
   * an undelivered success.
   */
  expireResult(jobId: string, failure?: { code: 'expired' | 'invalid_payload'; message: string }): Promise<StoredJob | null>;
  get(jobId: string): Promise<StoredJob | ForgottenJob | null>;
  /**
   * One page of the jobs whose delivery is not finished (unsettled, or settled and not yet posted
   * nor given up) and whose next try is due, oldest first, after `after`.
   */
  listUndelivered(after: SweepCursor | null, limit: number): Promise<StoredJob[]>;
  /** What /quota needs for one member; `monthStart` (YYYY-MM-DD) bounds the month's count. */
  memberQuota(guildId: string, userId: string, monthStart: string): Promise<MemberQuota>;
  /** The worker's run time, image count and backend of the last `limit` succeeded jobs, newest first (queue ETA seed). */
  recentRunTimes(limit: number): Promise<{ ms: number; count: number; backend: string | null }[]>;
}

/**
 * Erasing members' data from the bot's records (PRODUCT.md `/forget`, `RETENTION_DAYS`): prompts,
 * parameters, result references and interaction tokens; ledger amounts stay.
 */
export interface PrivacyStore {
  /** How many of the member's jobs in the guild /forget would erase now, and how many are still under way. */
  preview(guildId: string, userId: string): Promise<{ finished: number; underWay: number }>;
  /** Erases the member's finished jobs in the guild and audits it (who, how many). */
  forget(guildId: string, userId: string): Promise<{ forgotten: number; underWay: number }>;
  /** Retention: erases up to `limit` finished jobs created before `cutoff`, oldest first; returns how many. */
  eraseOlderThan(cutoff: Date, limit: number): Promise<number>;
  /** Erases the interaction tokens of jobs created before `createdBefore` (tokens live 15 minutes). */
  eraseDeadTokens(createdBefore: Date): Promise<number>;
}

/** A guild's effective settings: stored values or the deployment defaults. */
export interface GuildPolicy {
  guildId: string;
  dailyLimit: number;
  /** true when moderators set dailyLimit themselves. */
  dailyLimitSet: boolean;
  nsfwMode: NsfwMode;
  monthlyBudgetUsd: number;
  logChannelId: string | null;
  bannedWords: string[];
  /** What an hour of the guild's own GPU boxes is worth to it (null: not set, its jobs there book at 0). */
  gpuUsdPerHour: number | null;
}

/**
 * Guild settings, member overrides and banned words. Reads are cached briefly; every change is
 * written with its audit row in one transaction, so a change without an audit trail cannot happen.
 */
export interface GuildSettings {
  policy(guildId: string): Promise<GuildPolicy>;
  /** Changes guild-level settings and audits the before/after of exactly what changed. */
  updateGuild(
    guildId: string,
    actorId: string,
    action: string,
    patch: { dailyLimit?: number; nsfwMode?: NsfwMode; monthlyBudgetUsd?: number; logChannelId?: string; gpuUsdPerHour?: number },
  ): Promise<{ before: Record<string, unknown>; after: Record<string, unknown> }>;
  /** Returns the override that was in force (null: none). */
  setUserOverride(guildId: string, actorId: string, userId: string, dailyLimit: number): Promise<number | null>;
  clearUserOverride(guildId: string, actorId: string, userId: string): Promise<number | null>;
  /** The words really added or removed (none: nothing changed, no audit row), and the list after. */
  changeBannedWords(
    guildId: string,
    actorId: string,
    op: 'add' | 'remove',
    words: string[],
  ): Promise<{ changed: string[]; after: string[] }>;
}

/** `/admin stats` for one guild. */
export interface GuildStats {
  jobs: number;
  images: number;
  failures: number;
  costUsd: number;
  byDay: { day: string; jobs: number; costUsd: number }[];
  byBackend: { backend: string; attempts: number; costUsd: number }[];
  /** Succeeded jobs by the model they ran on (lineage), most used first. */
  byModel: { model: string; version: string | null; jobs: number; images: number; costUsd: number }[];
  topUsers: { userId: string; images: number }[];
}

/** One backend's attempts, success rate and latency over a period (all guilds). */
export interface BackendLatency {
  backend: string;
  attempts: number;
  successRate: number;
  p50s: number;
  p95s: number;
}
