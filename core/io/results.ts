import type { Redis } from 'ioredis';
import { type JobFailure, jobFailureSchema } from '../failures.js';

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

  /** Drops everything delivered jobs left behind (one command for all of them). */
  async forget(jobs: readonly { jobId: string; imageKeys: readonly string[] }[]): Promise<void> {
    const keys = jobs.flatMap((j) => [...j.imageKeys, this.gridKey(j.jobId), this.previewKey(j.jobId), this.failureKey(j.jobId)]);
    if (keys.length > 0) await this.redis.unlink(...keys);
  }

  /** Drops an inpaint job's inputs once it no longer needs them. */
  async forgetInputs(keys: readonly string[]): Promise<void> {
    if (keys.length > 0) await this.redis.del(...keys);
  }
}
