import type { Redis } from 'ioredis';
import { z } from 'zod';
import { type JobFailure, jobFailureSchema } from '../failures.js';
import { attemptSchema, LIMITS, modelLineageSchema } from '../generation.js';

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
  route: z.object({ reason: z.enum(['overflow', 'failover']), backend: z.string(), usd: z.number().nonnegative().optional() }).optional(),
  /** Every attempt of the job up to and including the paid success: booked once, by whichever try finishes. */
  attempts: z.array(attemptSchema),
  images: z.number().int().min(1).max(LIMITS.countMax),
});
export type KeptPaid = z.infer<typeof keptPaidSchema>;

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
  private failureKey(jobId: string): string {
    return `${this.prefix}:failure:${jobId}`;
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

  /** The paid result an earlier try of this job kept, if it is whole. */
  async keptPaid(jobId: string): Promise<{ kept: KeptPaid; images: Buffer[] } | null> {
    const raw = await this.redis.get(this.keptKey(jobId));
    if (raw === null) return null;
    const parsed = keptPaidSchema.safeParse(JSON.parse(raw));
    if (!parsed.success) return null;
    const images = await this.getMany(Array.from({ length: parsed.data.images }, (_, i) => this.keptKey(jobId, i)));
    if (images.some((b) => b === null)) return null;
    return { kept: parsed.data, images: images as Buffer[] };
  }

  async put(key: string, bytes: Buffer): Promise<void> {
    await this.redis.set(key, bytes, 'EX', this.ttlSeconds);
  }

  async putMany(entries: readonly (readonly [string, Buffer])[]): Promise<void> {
    const tx = this.redis.multi();
    for (const [k, v] of entries) tx.set(k, v, 'EX', this.ttlSeconds);
    await tx.exec();
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
    const raw = await this.redis.get(this.failureKey(jobId));
    if (raw === null) return null;
    const parsed = jobFailureSchema.safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data : null;
  }

  /** Drops everything delivered jobs left behind (one command for all of them), a kept paid result included. */
  async forget(jobs: readonly { jobId: string; imageKeys: readonly string[] }[]): Promise<void> {
    const keys = jobs.flatMap((j) => [
      ...j.imageKeys,
      this.gridKey(j.jobId),
      this.previewKey(j.jobId),
      this.failureKey(j.jobId),
      ...this.keptKeys(j.jobId),
    ]);
    if (keys.length > 0) await this.redis.unlink(...keys);
  }

  /** Drops an inpaint job's inputs once it no longer needs them. */
  async forgetInputs(keys: readonly string[]): Promise<void> {
    if (keys.length > 0) await this.redis.del(...keys);
  }
}
