import type pg from 'pg';
import { z } from 'zod';
import { budgetLeft, monthlyBudgetSql, spentInMonthSql } from '../../core/budget.js';
import { type GenerationRequest, generationRequestSchema, jobResultSchema } from '../../core/generation.js';
import { failureText } from '../../core/messages.js';
import type {
  Delivered,
  ForgottenJob,
  JobStore,
  MemberQuota,
  ReserveInput,
  ReserveOutcome,
  StoredJob,
  SweepCursor,
} from '../../core/ports.js';
import {
  admission,
  admitsSql,
  dailyLimitSql,
  imagesTodaySql,
  prevDayImagesSql,
  type QuotaFacts,
  refundedImagesSql,
  refundedPrevImagesSql,
} from '../../core/quota.js';
import { type SettleOutcome, settlement } from '../../core/settle.js';
import { DEFAULT_UPLOAD_LIMIT_BYTES } from '../../core/upload-plan.js';
import type { AdmissionGate } from './admission-gate.js';

const runTimeRowSchema = z.object({
  ms: z.number().nonnegative().nullable(),
  count: z.number().int().min(1),
  backend: z.string().nullable(),
});

/** Columns every StoredJob read selects, cast to plain JS types. */
const JOB_COLUMNS = `
  j.id::text AS id, j.guild_id, j.channel_id, j.user_id, j.kind::text AS kind, j.status::text AS status,
  j.params, j.image_count, j.channel_nsfw, j.application_id, j.interaction_id, j.interaction_token,
  j.created_at, j.started_at, j.finished_at, j.delivered_at, j.backend, j.cost_usd::float8 AS cost_usd,
  j.error_code, j.error_message, j.result, j.reply_message_id, j.result_message_id, j.result_extra_ids, j.upload_limit_bytes,
  j.model, j.model_version, j.sampler, j.delivery_attempts, j.forgotten_at, j.forgotten_reason`;

interface JobRow {
  id: string;
  guild_id: string;
  channel_id: string;
  user_id: string;
  kind: string;
  status: string;
  params: unknown;
  image_count: number;
  channel_nsfw: boolean;
  application_id: string;
  interaction_id: string;
  /** NULL once erased (delivered, given up, forgotten, or past its 15 minutes). */
  interaction_token: string | null;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  delivered_at: Date | null;
  backend: string | null;
  cost_usd: number;
  error_code: string | null;
  error_message: string | null;
  result: unknown;
  reply_message_id: string | null;
  result_message_id: string | null;
  result_extra_ids: string[] | null;
  upload_limit_bytes: number;
  model: string | null;
  model_version: string | null;
  sampler: string | null;
  delivery_attempts: number;
  forgotten_at: Date | null;
  forgotten_reason: string | null;
}

function toForgottenJob(r: JobRow & { forgotten_at: Date }): ForgottenJob {
  return {
    id: r.id,
    guildId: r.guild_id,
    channelId: r.channel_id,
    userId: r.user_id,
    kind: r.kind as ForgottenJob['kind'],
    status: r.status as ForgottenJob['status'],
    imageCount: r.image_count,
    backend: r.backend,
    costUsd: Number(r.cost_usd),
    createdAt: r.created_at,
    forgottenAt: r.forgotten_at,
    forgottenReason: r.forgotten_reason === 'retention' ? 'retention' : 'member',
  };
}

/** Rows the sweep, settle and delivery read are never forgotten ones (only finished jobs are erased). */
function toStoredJob(r: JobRow): StoredJob {
  const result = r.result === null ? null : jobResultSchema.safeParse(r.result);
  return {
    id: r.id,
    guildId: r.guild_id,
    channelId: r.channel_id,
    userId: r.user_id,
    kind: r.kind as StoredJob['kind'],
    status: r.status as StoredJob['status'],
    request: generationRequestSchema.parse(r.params),
    imageCount: r.image_count,
    channelNsfw: r.channel_nsfw,
    interaction: {
      applicationId: r.application_id,
      interactionId: r.interaction_id,
      // Erased tokens are dead ones: every use first checks the token's age.
      token: r.interaction_token ?? '',
      uploadLimitBytes: r.upload_limit_bytes,
    },
    createdAt: r.created_at,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    deliveredAt: r.delivered_at,
    backend: r.backend,
    costUsd: Number(r.cost_usd),
    errorCode: r.error_code,
    errorMessage: r.error_message,
    result: result?.success ? result.data : null,
    replyMessageId: r.reply_message_id,
    resultMessageId: r.result_message_id,
    resultExtraIds: r.result_extra_ids ?? [],
    model: r.model ? { name: r.model, ...(r.model_version ? { version: r.model_version } : {}) } : null,
    sampler: r.sampler,
    deliveryAttempts: r.delivery_attempts,
  };
}

/** The member's quota facts (core/quota.ts QuotaFacts), read as they are now. */
const FACTS_SQL = `
  SELECT (SELECT daily_limit FROM user_quota_overrides WHERE guild_id = $1 AND user_id = $2) AS user_override,
         (SELECT daily_limit FROM guild_settings WHERE guild_id = $1) AS guild_default,
         u.day::text AS day, u.images, u.in_flight
  FROM (SELECT 1) AS one LEFT JOIN member_usage u ON u.guild_id = $1 AND u.user_id = $2`;

interface FactsRow {
  user_override: number | null;
  guild_default: number | null;
  day: string | null;
  images: number | null;
  in_flight: number | null;
}

function toFacts(r: FactsRow | undefined): QuotaFacts {
  return {
    userOverride: r?.user_override ?? null,
    guildDefault: r?.guild_default ?? null,
    usage: r?.day ? { day: r.day, images: Number(r.images), inFlight: Number(r.in_flight) } : null,
  };
}

/**
 * The reservation: one statement. The conditional upsert locks the member's row, so concurrent
 * requests queue on it and each sees the images and in-flight jobs the previous one left; the job
 * row exists only if the reservation passed. Every rule in it comes from core/quota.ts and
 * core/budget.ts.
 */
const RESERVE_SQL = `
  WITH lim AS (SELECT ${dailyLimitSql('$1', '$2', '$5')} AS daily),
  reserve AS (
    INSERT INTO member_usage AS m (guild_id, user_id, day, images, in_flight)
    SELECT $1, $2, $3::date, $4::int, 1 FROM lim
    WHERE ${admitsSql({ used: '0', asked: '$4::int', inFlight: '0', limit: 'lim.daily', maxInFlight: '$6::int' })}
    ON CONFLICT (guild_id, user_id) DO UPDATE SET
      images = ${imagesTodaySql('m', 'EXCLUDED.day')} + EXCLUDED.images,
      prev_images = ${prevDayImagesSql('m', 'EXCLUDED.day')},
      day = EXCLUDED.day,
      in_flight = m.in_flight + 1
    WHERE ${admitsSql({ used: imagesTodaySql('m', 'EXCLUDED.day'), asked: 'EXCLUDED.images', inFlight: 'm.in_flight', limit: '(SELECT daily FROM lim)', maxInFlight: '$6::int' })}
    RETURNING images, prev_images
  ),
  job AS (
    INSERT INTO jobs (guild_id, channel_id, user_id, kind, params, image_count, day, channel_nsfw,
                      application_id, interaction_id, interaction_token, parent_job_id, upload_limit_bytes)
    SELECT $1, $7, $2, $8::job_kind, $9::jsonb, $4::int, $3::date, $10::boolean, $11, $12, $13, $14::uuid, $17::int
    FROM reserve
    RETURNING id::text AS id
  )
  SELECT (SELECT id FROM job) AS job_id, (SELECT images FROM reserve) AS images, (SELECT daily FROM lim) AS daily,
         (SELECT prev_images FROM reserve) AS prev_images,
         ${monthlyBudgetSql('$1', '$16')}::float8 AS budget, ${spentInMonthSql('$1', '$15')}::float8 AS spent`;

/**
 * The settle: one statement. The status guard makes a second settle a no-op, so the charge or
 * refund (core/settle.ts decides which; core/quota.ts says what a refund gives back) and the ledger
 * rows happen exactly once whatever retries, duplicate events or restarts occur; so does the
 * month's paid spend the rows add to (a trigger on cost_ledger adds each paid row as it is
 * inserted; a row already booked is not inserted again, so not added twice).
 */
const SETTLE_SQL = `
  WITH j AS (
    UPDATE jobs SET status = $2::job_status, finished_at = now(), started_at = COALESCE(started_at, now()),
      backend = $3, seed = $4::bigint, cost_usd = $5::numeric, error_code = $6, error_message = $7,
      model = $11, model_version = $12, sampler = $13,
      result = $8::jsonb, delivery_claimed_at = now()
    WHERE id = $1::uuid AND status IN ('queued', 'running')
    RETURNING *
  ),
  u AS (
    UPDATE member_usage m SET
      in_flight = GREATEST(m.in_flight - 1, 0),
      images = CASE WHEN $9::boolean THEN ${refundedImagesSql('m', 'j.day', 'j.image_count')} ELSE m.images END,
      prev_images = CASE WHEN $9::boolean THEN ${refundedPrevImagesSql('m', 'j.day', 'j.image_count')} ELSE m.prev_images END
    FROM j WHERE m.guild_id = j.guild_id AND m.user_id = j.user_id
    RETURNING 1
  ),
  l AS (
    INSERT INTO cost_ledger (job_id, attempt_no, guild_id, backend, outcome, seconds, cost_usd, own_usd)
    SELECT j.id, a.ord::int, j.guild_id, a.e->>'backend', a.e->>'outcome', (a.e->>'seconds')::numeric, (a.e->>'costUsd')::numeric,
           COALESCE((a.e->>'ownUsd')::numeric, 0)
    FROM j, jsonb_array_elements($10::jsonb) WITH ORDINALITY AS a(e, ord)
    ON CONFLICT (job_id, attempt_no) DO NOTHING
    RETURNING 1
  )
  SELECT ${JOB_COLUMNS} FROM j`;

/**
 * JobStore on Postgres through `pg`: every method is a single SQL statement. The per-job ones are
 * named, so each connection parses and plans them once.
 */
export class PgJobStore implements JobStore {
  /**
   * @param admissions - the line reservations wait in for the database (bot/store/admission-gate.ts);
   *   without it they go straight to the pool.
   */
  constructor(
    private readonly pool: pg.Pool,
    private readonly admissions?: AdmissionGate,
  ) {}

  private async rows<R extends unknown[]>(name: string | null, sql: string, ...params: unknown[]): Promise<R> {
    const res = await this.pool.query(name ? { name, text: sql, values: params } : { text: sql, values: params });
    return res.rows as R;
  }

  private async exec(name: string | null, sql: string, ...params: unknown[]): Promise<number> {
    const res = await this.pool.query(name ? { name, text: sql, values: params } : { text: sql, values: params });
    return res.rowCount ?? 0;
  }

  async reserve(input: ReserveInput): Promise<ReserveOutcome> {
    if (!this.admissions) return this.reserveNow(input);
    const outcome = await this.admissions.run(() => this.reserveNow(input));
    return outcome === 'busy' ? { ok: false, reason: 'busy' } : outcome;
  }

  private async reserveNow(input: ReserveInput): Promise<ReserveOutcome> {
    const { actor, interaction, request, day } = input;
    const rows = await this.rows<
      { job_id: string | null; images: number | null; daily: number; prev_images: number | null; budget: number; spent: number }[]
    >(
      'reserve',
      RESERVE_SQL,
      actor.guildId,
      actor.userId,
      day,
      request.count,
      input.deploymentDailyLimit,
      input.maxInFlight,
      actor.channelId,
      request.kind,
      JSON.stringify(request),
      actor.channelNsfw,
      interaction.applicationId,
      interaction.interactionId,
      interaction.token,
      input.parentJobId ?? null,
      input.monthStart,
      input.deploymentMonthlyBudgetUsd,
      interaction.uploadLimitBytes ?? DEFAULT_UPLOAD_LIMIT_BYTES,
    );
    const r = rows[0]!;
    if (r.job_id !== null) {
      const budgetLeftUsd = budgetLeft(Number(r.budget), Number(r.spent));
      return {
        ok: true,
        jobId: r.job_id,
        usedToday: Number(r.images),
        prevDayImages: Number(r.prev_images ?? 0),
        limit: Number(r.daily),
        budgetLeftUsd,
        budgetUsd: Number(r.budget),
        spentUsd: Number(r.spent),
      };
    }
    // Refused: the statement's snapshot may predate concurrent reservations, so the reason comes
    // from the facts as they are now (refusals are off the hot path).
    const facts = toFacts((await this.rows<FactsRow[]>(null, FACTS_SQL, actor.guildId, actor.userId))[0]);
    const a = admission(facts, request.count, day, input);
    // Admitted now means a job finished meanwhile; the member hears the quota as it stood.
    if (a.ok) return { ok: false, reason: 'quota', usedToday: a.usedToday, limit: a.limit, inFlight: facts.usage?.inFlight ?? 0 };
    return a;
  }

  async markRunning(started: readonly { jobId: string; at: Date }[]): Promise<void> {
    if (started.length === 0) return;
    await this.exec(
      'mark-running',
      `UPDATE jobs j SET status = 'running', started_at = s.at
       FROM unnest($1::uuid[], $2::timestamptz[]) AS s(id, at)
       WHERE j.id = s.id AND j.status = 'queued'`,
      started.map((s) => s.jobId),
      started.map((s) => s.at),
    );
  }

  async settle(jobId: string, outcome: SettleOutcome): Promise<StoredJob | null> {
    const s = settlement(outcome);
    const rows = await this.rows<JobRow[]>(
      'settle',
      SETTLE_SQL,
      jobId,
      s.status,
      s.result?.backend ?? null,
      s.result?.seed ?? null,
      s.costUsd.toFixed(6),
      s.errorCode,
      s.errorMessage,
      s.result ? JSON.stringify(s.result) : null,
      s.refund,
      JSON.stringify(s.attempts),
      s.result?.model?.name ?? null,
      s.result?.model?.version ?? null,
      s.result?.sampler ?? null,
    );
    return rows[0] ? toStoredJob(rows[0]) : null;
  }

  async claimDelivery(jobId: string, staleAfterMs: number): Promise<StoredJob | null> {
    const rows = await this.rows<JobRow[]>(
      'claim-delivery',
      `UPDATE jobs j SET delivery_claimed_at = now()
       WHERE id = $1::uuid AND status IN ('succeeded', 'failed', 'cancelled') AND delivered_at IS NULL AND undeliverable_at IS NULL
         AND (next_delivery_at IS NULL OR next_delivery_at <= now())
         AND (delivery_claimed_at IS NULL OR delivery_claimed_at < now() - make_interval(secs => $2::float8 / 1000))
       RETURNING ${JOB_COLUMNS}`,
      jobId,
      staleAfterMs,
    );
    return rows[0] ? toStoredJob(rows[0]) : null;
  }

  async setRequest(jobId: string, request: GenerationRequest): Promise<boolean> {
    const n = await this.exec(
      'set-request',
      `UPDATE jobs SET params = $2::jsonb WHERE id = $1::uuid AND status = 'queued'`,
      jobId,
      JSON.stringify(request),
    );
    return n === 1;
  }

  async markDelivered(delivered: readonly Delivered[]): Promise<void> {
    if (delivered.length === 0) return;
    await this.exec(
      'mark-delivered',
      `UPDATE jobs j SET delivered_at = now(), result_message_id = COALESCE(d.message_id, j.result_message_id),
         result_extra_ids = ARRAY(SELECT jsonb_array_elements_text(d.extra)), interaction_token = NULL, next_delivery_at = NULL
       FROM jsonb_to_recordset($1::jsonb) AS d(id uuid, message_id text, extra jsonb)
       WHERE j.id = d.id`,
      JSON.stringify(delivered.map((d) => ({ id: d.jobId, message_id: d.messageId, extra: d.extraIds ?? [] }))),
    );
  }

  async notePosted(jobId: string, messageId: string, extraIds: readonly string[]): Promise<void> {
    await this.exec(
      'note-posted',
      `UPDATE jobs SET result_message_id = $2, result_extra_ids = $3::text[] WHERE id = $1::uuid AND delivered_at IS NULL`,
      jobId,
      messageId,
      extraIds,
    );
  }

  async rememberReply(jobId: string, messageId: string): Promise<void> {
    await this.exec(null, `UPDATE jobs SET reply_message_id = $2 WHERE id = $1::uuid AND reply_message_id IS NULL`, jobId, messageId);
  }

  async releaseDelivery(jobId: string): Promise<void> {
    await this.exec(null, `UPDATE jobs SET delivery_claimed_at = NULL WHERE id = $1::uuid AND delivered_at IS NULL`, jobId);
  }

  async deferDelivery(jobId: string, tries: number, nextAt: Date, error: string): Promise<void> {
    await this.exec(
      'defer-delivery',
      `UPDATE jobs SET delivery_attempts = $2, next_delivery_at = $3, delivery_error = $4, delivery_claimed_at = NULL
       WHERE id = $1::uuid AND delivered_at IS NULL AND undeliverable_at IS NULL`,
      jobId,
      tries,
      nextAt,
      error.slice(0, 200),
    );
  }

  async giveUpDelivery(jobId: string, error: string): Promise<StoredJob | null> {
    // One statement: the row as it was (a success is refunded), the give-up, and the refund.
    const rows = await this.rows<JobRow[]>(
      'give-up-delivery',
      `WITH old AS (
         SELECT ${JOB_COLUMNS} FROM jobs j
         WHERE j.id = $1::uuid AND j.delivered_at IS NULL AND j.undeliverable_at IS NULL
           AND j.status IN ('succeeded', 'failed', 'cancelled')
         FOR UPDATE
       ),
       j AS (
         UPDATE jobs SET undeliverable_at = now(), delivery_error = $2, delivery_claimed_at = NULL, next_delivery_at = NULL,
           delivery_attempts = jobs.delivery_attempts + 1, interaction_token = NULL,
           status = CASE WHEN jobs.status = 'succeeded' THEN 'failed'::job_status ELSE jobs.status END,
           error_code = CASE WHEN jobs.status = 'succeeded' THEN 'undeliverable' ELSE jobs.error_code END,
           error_message = CASE WHEN jobs.status = 'succeeded' THEN $3 ELSE jobs.error_message END
         FROM old WHERE jobs.id = old.id::uuid
         RETURNING jobs.id
       ),
       u AS (
         UPDATE member_usage m SET images = ${refundedImagesSql('m', 'jobs.day', 'jobs.image_count')},
           prev_images = ${refundedPrevImagesSql('m', 'jobs.day', 'jobs.image_count')}
         FROM old, jobs WHERE old.status = 'succeeded' AND jobs.id = old.id::uuid
           AND m.guild_id = jobs.guild_id AND m.user_id = jobs.user_id
         RETURNING 1
       )
       SELECT old.* FROM old, j`,
      jobId,
      error.slice(0, 200),
      failureText.undeliverable,
    );
    return rows[0] ? toStoredJob(rows[0]) : null;
  }

  async expireResult(
    jobId: string,
    failure: { code: 'expired' | 'invalid_payload'; message: string } = { code: 'expired', message: failureText.expired },
  ): Promise<StoredJob | null> {
    // One statement: the failure and the refund (core/settle.ts: a failure gives the images back).
    const rows = await this.rows<JobRow[]>(
      'expire-result',
      `WITH j AS (
         UPDATE jobs SET status = 'failed'::job_status, error_code = $2, error_message = $3
         WHERE id = $1::uuid AND status = 'succeeded' AND delivered_at IS NULL AND undeliverable_at IS NULL
         RETURNING *
       ),
       u AS (
         UPDATE member_usage m SET images = ${refundedImagesSql('m', 'j.day', 'j.image_count')},
           prev_images = ${refundedPrevImagesSql('m', 'j.day', 'j.image_count')}
         FROM j WHERE m.guild_id = j.guild_id AND m.user_id = j.user_id
         RETURNING 1
       )
       SELECT ${JOB_COLUMNS} FROM j`,
      jobId,
      failure.code,
      failure.message,
    );
    return rows[0] ? toStoredJob(rows[0]) : null;
  }

  async get(jobId: string): Promise<StoredJob | ForgottenJob | null> {
    if (!/^[0-9a-f-]{36}$/i.test(jobId)) return null;
    const rows = await this.rows<JobRow[]>('get-job', `SELECT ${JOB_COLUMNS} FROM jobs j WHERE j.id = $1::uuid`, jobId);
    const r = rows[0];
    if (!r) return null;
    return r.forgotten_at ? toForgottenJob({ ...r, forgotten_at: r.forgotten_at }) : toStoredJob(r);
  }

  async listUndelivered(after: SweepCursor | null, limit: number): Promise<StoredJob[]> {
    // Keyset pagination on the partial index jobs_open_idx (created_at, id), which holds only these rows.
    const rows = await this.rows<JobRow[]>(
      'list-undelivered',
      `SELECT ${JOB_COLUMNS} FROM jobs j
       WHERE j.delivered_at IS NULL AND j.undeliverable_at IS NULL AND (j.created_at, j.id) > ($1::timestamptz, $2::uuid)
         AND (j.next_delivery_at IS NULL OR j.next_delivery_at <= now())
       ORDER BY j.created_at, j.id LIMIT $3`,
      after?.createdAt ?? new Date(0),
      after?.id ?? '00000000-0000-0000-0000-000000000000',
      limit,
    );
    return rows.map(toStoredJob);
  }

  async memberQuota(guildId: string, userId: string, monthStart: string): Promise<MemberQuota> {
    const [facts, month, queued] = await Promise.all([
      this.rows<FactsRow[]>(null, FACTS_SQL, guildId, userId),
      this.rows<{ month: number }[]>(
        null,
        `SELECT COALESCE(sum(image_count), 0)::int AS month FROM jobs
         WHERE guild_id = $1 AND user_id = $2 AND day >= $3::date AND status IN ('queued', 'running', 'succeeded')`,
        guildId,
        userId,
        monthStart,
      ),
      this.rows<{ id: string; status: string; prompt: string; created_at: Date }[]>(
        null,
        `SELECT id::text, status::text, params->>'prompt' AS prompt, created_at FROM jobs
         WHERE guild_id = $1 AND user_id = $2 AND status IN ('queued', 'running')
           -- Always true of a queued or running job; lets Postgres read the open jobs' index (jobs_open_idx).
           AND delivered_at IS NULL AND undeliverable_at IS NULL
         ORDER BY created_at LIMIT 10`,
        guildId,
        userId,
      ),
    ]);
    return {
      facts: toFacts(facts[0]),
      usedThisMonth: Number(month[0]!.month),
      queued: queued.map((q) => ({ id: q.id, status: q.status, prompt: q.prompt, createdAt: q.created_at })),
    };
  }

  async recentRunTimes(limit: number) {
    // Walks the delivered_at index backwards: the newest deliveries are the newest finishes.
    const rows = await this.rows<unknown[]>(
      null,
      `SELECT CASE WHEN jsonb_typeof(result->'runMs') = 'number' THEN (result->>'runMs')::float8 END AS ms,
              image_count AS count, backend
       FROM jobs WHERE status = 'succeeded' AND delivered_at IS NOT NULL
       ORDER BY delivered_at DESC LIMIT $1`,
      limit,
    );
    return rows.flatMap((r) => {
      const parsed = runTimeRowSchema.safeParse(r);
      return parsed.success && parsed.data.ms !== null
        ? [{ ms: parsed.data.ms, count: parsed.data.count, backend: parsed.data.backend }]
        : [];
    });
  }
}
