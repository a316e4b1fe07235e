import type { Redis } from 'ioredis';
import { z } from 'zod';
import { keyInGuildSpace } from '../config.js';
import { type JobFailure, jobFailureSchema } from '../failures.js';
import { attemptSchema, LIMITS, modelLineageSchema } from '../generation.js';
import type { EarlierTries } from '../settle.js';

/**
 * A paid result kept under its job before our own post-processing (paste-back, classifier, grid,
 * storing): a later try of the same job resumes from it instead of paying the provider again.
 */
export const keptPaidSchema = z.object({
  backend: z.string(),
  seed: z.number().int(),
  billedSeconds: z.number().nonnegative(),
  billedImages: z.number().int().nonnegative(),
  usdPerImage: z.number().nonnegative().optional(),
  model: modelLineageSchema.optional(),
  sampler: z.string().optional(),
  steps: z.number().int().min(1).optional(),
  guidance: z.number().min(0).nullable().optional(),
  route: z.object({ reason: z.enum(['overflow', 'failover']), backend: z.string(), usd: z.number().nonnegative().optional() }).optional(),
  /** Every attempt of the job up to and including the paid success: booked once, by whichever try finishes. */
  attempts: z.array(attemptSchema),
  images: z.number().int().min(1).max(LIMITS.countMax),
});
export type KeptPaid = z.infer<typeof keptPaidSchema>;

/**
 * The paid run a job's try started last at a provider (a Replicate prediction), recorded as soon as
 * the provider named it. If that try's worker dies, the next try finds the run here: unless one of
 * the job's booked attempts names it, it is stopped, booked and its reservation settled.
 */
export const remoteRunSchema = z.object({
  backend: z.string(),
  ref: z.string().min(1).max(200),
  usdPerImage: z.number().nonnegative().optional(),
  /** Where its budget reservation lives, when the shared budget made one. */
  reservation: z.object({ guildId: z.string(), month: z.string(), field: z.string() }).optional(),
});
export type RemoteRun = z.infer<typeof remoteRunSchema>;

/**
 * Result images, previews, inpaint inputs and failure summaries in transit between worker and bot.
 * Binary values under per-job keys with a TTL, so nothing outlives delivery by long.
 */
export class ResultStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly ttlSeconds: number,
  ) {}

  imageKey(jobId: string, index: number): string {
    return `${this.prefix}:img:${jobId}:${index}`;
  }
  gridKey(jobId: string): string {
    return `${this.prefix}:img:${jobId}:grid`;
  }
  previewKey(jobId: string): string {
    return `${this.prefix}:preview:${jobId}`;
  }
  inputKey(jobId: string, name: 'image' | 'mask' | 'original' | 'maskFull'): string {
    return `${this.prefix}:input:${jobId}:${name}`;
  }
  /**
   * Whether every key a worker's result names is one of this job's own result keys (its images in
   * order, its grid). A result naming any other key is refused before anything is read or deleted:
   * a worker must not make the bot read another job's images, inputs or anything else in Redis.
   */
  ownsResultKeys(jobId: string, result: { imageKeys: readonly string[]; gridKey?: string | undefined }): boolean {
    if (!result.imageKeys.every((k, i) => k === this.imageKey(jobId, i))) return false;
    return result.gridKey === undefined || result.gridKey === this.gridKey(jobId);
  }
  private failureKey(jobId: string): string {
    return `${this.prefix}:failure:${jobId}`;
  }
  private remoteRunKey(jobId: string): string {
    return `${this.prefix}:run:${jobId}`;
  }
  private keptKey(jobId: string, index?: number): string {
    return index === undefined ? `${this.prefix}:paid:${jobId}` : `${this.prefix}:paid:${jobId}:${index}`;
  }
  private keptKeys(jobId: string): string[] {
    return [this.keptKey(jobId), ...Array.from({ length: LIMITS.countMax }, (_, i) => this.keptKey(jobId, i))];
  }

  /** Keeps a paid result's raw images and what the job result needs of it, in one transaction. */
  async keepPaid(jobId: string, kept: KeptPaid, images: readonly Buffer[]): Promise<void> {
    const tx = this.redis.multi();
    for (const [i, img] of images.entries()) tx.set(this.keptKey(jobId, i), img, 'EX', this.ttlSeconds);
    tx.set(this.keptKey(jobId), JSON.stringify(kept), 'EX', this.ttlSeconds);
    const replies = await tx.exec();
    const failed = replies?.find(([err]) => err);
    if (!replies || failed) throw failed?.[0] ?? new Error('keeping the paid result was aborted');
  }

  /** Records the paid run a try just started (one SET, replacing the previous run's record). */
  async putRemoteRun(jobId: string, run: RemoteRun): Promise<void> {
    await this.redis.set(this.remoteRunKey(jobId), JSON.stringify(run), 'EX', this.ttlSeconds);
  }

  /**
   * What a try of a job starts from, in one command (MGET): the failure record of its earlier
   * tries, the paid result one of them kept (its images read only when there is one), the paid run
   * an earlier try started last, and whether each of `flags` (other keys about the job, e.g. its
   * cancel flag) is set.
   */
  async jobStart(
    jobId: string,
    flags: readonly string[] = [],
  ): Promise<{
    failure: JobFailure | null;
    kept: { kept: KeptPaid; images: Buffer[] } | null;
    remoteRun: RemoteRun | null;
    flags: boolean[];
  }> {
    const [failure, kept, run, ...rest] = await this.redis.mget(
      this.failureKey(jobId),
      this.keptKey(jobId),
      this.remoteRunKey(jobId),
      ...flags,
    );
    return {
      failure: this.failureFrom(failure ?? null),
      kept: await this.keptFrom(jobId, kept ?? null),
      remoteRun: this.remoteRunFrom(run ?? null),
      flags: rest.map((v) => v !== null),
    };
  }

  private remoteRunFrom(raw: string | null): RemoteRun | null {
    if (raw === null) return null;
    const parsed = remoteRunSchema.safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data : null;
  }

  /**
   * What earlier tries of a job billed, in one command (MGET): its failure record and the attempts
   * of a paid result one of them kept (its images are not read). For a settle no worker makes.
   */
  async earlierTries(jobId: string): Promise<EarlierTries> {
    const [failure, kept] = await this.redis.mget(this.failureKey(jobId), this.keptKey(jobId));
    return { failure: this.failureFrom(failure ?? null), keptAttempts: this.keptMeta(kept ?? null)?.attempts ?? null };
  }

  /** The paid result an earlier try of this job kept, if it is whole. */
  private async keptFrom(jobId: string, raw: string | null): Promise<{ kept: KeptPaid; images: Buffer[] } | null> {
    const kept = this.keptMeta(raw);
    if (!kept) return null;
    const images = await this.getMany(Array.from({ length: kept.images }, (_, i) => this.keptKey(jobId, i)));
    if (images.some((b) => b === null)) return null;
    return { kept, images: images as Buffer[] };
  }

  private keptMeta(raw: string | null): KeptPaid | null {
    if (raw === null) return null;
    const parsed = keptPaidSchema.safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data : null;
  }

  async put(key: string, bytes: Buffer): Promise<void> {
    await this.redis.set(key, bytes, 'EX', this.ttlSeconds);
  }

  /**
   * No MULTI: nothing reads the keys before a job's result (or payload) names them. On an
   * auto-pipelining connection (the worker's) the SETs leave in the same write as whatever else
   * goes out this tick (the box's release); elsewhere, in one pipeline.
   */
  async putMany(entries: readonly (readonly [string, Buffer])[]): Promise<void> {
    if (entries.length === 1 || this.redis.options.enableAutoPipelining) {
      await Promise.all(entries.map(([k, v]) => this.redis.set(k, v, 'EX', this.ttlSeconds)));
      return;
    }
    const p = this.redis.pipeline();
    for (const [k, v] of entries) p.set(k, v, 'EX', this.ttlSeconds);
    const failed = (await p.exec())?.find(([err]) => err);
    if (failed) throw failed[0];
  }

  async get(key: string): Promise<Buffer | null> {
    return this.redis.getBuffer(key);
  }

  async getMany(keys: readonly string[]): Promise<(Buffer | null)[]> {
    if (keys.length === 0) return [];
    return this.redis.mgetBuffer(...keys);
  }

  async putFailure(jobId: string, failure: JobFailure): Promise<void> {
    await this.redis.set(this.failureKey(jobId), JSON.stringify(failure), 'EX', this.ttlSeconds);
  }

  async getFailure(jobId: string): Promise<JobFailure | null> {
    return this.failureFrom(await this.redis.get(this.failureKey(jobId)));
  }

  private failureFrom(raw: string | null): JobFailure | null {
    if (raw === null) return null;
    const parsed = jobFailureSchema.safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data : null;
  }

  /**
   * Drops everything delivered jobs left behind (one command for all of them): a kept paid result,
   * and the member's input images (`inputKeys`, as the job's request names them under this prefix)
   * with their copies in the job's guild key space, where a job for the guild's own boxes has them
   * (its worker drops them only when it succeeds).
   */
  async forget(
    jobs: readonly { jobId: string; imageKeys: readonly string[]; inputKeys?: readonly string[]; guildId?: string | null }[],
  ): Promise<void> {
    const keys = jobs.flatMap((j) => [
      ...j.imageKeys,
      this.gridKey(j.jobId),
      this.previewKey(j.jobId),
      this.failureKey(j.jobId),
      this.remoteRunKey(j.jobId),
      ...this.keptKeys(j.jobId),
      ...(j.inputKeys ?? []).flatMap((k) => (j.guildId ? [k, keyInGuildSpace(k, this.prefix, j.guildId)] : [k])),
    ]);
    if (keys.length > 0) await this.redis.unlink(...keys);
  }

  /** Drops an inpaint job's inputs once it no longer needs them. */
  async forgetInputs(keys: readonly string[]): Promise<void> {
    if (keys.length > 0) await this.redis.del(...keys);
  }
}
