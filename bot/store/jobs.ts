import type pg from 'pg';
import { z } from 'zod';
import { type Attempt, generationRequestSchema, jobResultSchema } from '../../core/generation.js';
import type { JobStore, ReserveInput, ReserveOutcome, SettleOutcome, StoredJob } from '../../core/ports.js';
import { DEFAULT_UPLOAD_LIMIT_BYTES } from '../../core/upload-plan.js';

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
  j.error_code, j.error_message, j.result, j.reply_message_id, j.result_message_id, j.result_extra_ids, j.upload_limit_bytes`;

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
  interaction_token: string;
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
}

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
      token: r.interaction_token,
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
  };
}

function attemptsOf(outcome: SettleOutcome): Attempt[] {
  return outcome.status === 'succeeded' ? outcome.result.attempts : outcome.attempts;
}

/** JobStore on Postgres through `pg`: every method is a single SQL statement. */
export class PgJobStore implements JobStore {
  constructor(private readonly pool: pg.Pool) {}

  private async rows<R extends unknown[]>(sql: string, ...params: unknown[]): Promise<R> {
    return (await this.pool.query(sql, params)).rows as R;
  }

  private async exec(sql: string, ...params: unknown[]): Promise<number> {
    return (await this.pool.query(sql, params)).rowCount ?? 0;
  }

  async reserve(input: ReserveInput): Promise<ReserveOutcome> {
    const { actor, interaction, request, day } = input;
    const n = request.count;
    // One statement: the conditional upsert locks the member's row, so concurrent requests queue on it
    // and each sees the images and in-flight jobs the previous one left; the job row exists only if it passed.
    const rows = await this.rows<
      {
        job_id: string | null;
        images: number | null;
        daily: number;
        prev_images: number | null;
        prev_in_flight: number | null;
        prev_day: string | null;
        budget: number;
        spent: number;
      }[]
    >(
      `WITH lim AS (
         SELECT COALESCE(
           (SELECT daily_limit FROM user_quota_overrides WHERE guild_id = $1 AND user_id = $2),
           (SELECT daily_limit FROM guild_settings WHERE guild_id = $1),
           $5::int) AS daily
       ),
       prev AS (
         SELECT images, in_flight, day FROM member_usage WHERE guild_id = $1 AND user_id = $2
       ),
       reserve AS (
         INSERT INTO member_usage AS m (guild_id, user_id, day, images, in_flight)
         SELECT $1, $2, $3::date, $4::int, 1 FROM lim WHERE $4::int <= lim.daily AND $6::int >= 1
         ON CONFLICT (guild_id, user_id) DO UPDATE SET
           images = (CASE WHEN m.day = EXCLUDED.day THEN m.images ELSE 0 END) + EXCLUDED.images,
           day = EXCLUDED.day,
           in_flight = m.in_flight + 1
         WHERE (CASE WHEN m.day = EXCLUDED.day THEN m.images ELSE 0 END) + EXCLUDED.images <= (SELECT daily FROM lim)
           AND m.in_flight < $6::int
         RETURNING images
       ),
       job AS (
         INSERT INTO jobs (guild_id, channel_id, user_id, kind, params, image_count, day, channel_nsfw,
                           application_id, interaction_id, interaction_token, parent_job_id, upload_limit_bytes)
         SELECT $1, $7, $2, $8::job_kind, $9::jsonb, $4::int, $3::date, $10::boolean, $11, $12, $13, $14::uuid, $17::int
         FROM reserve
         RETURNING id::text AS id
       )
       SELECT (SELECT id FROM job) AS job_id, (SELECT images FROM reserve) AS images,
              (SELECT daily FROM lim) AS daily, (SELECT images FROM prev) AS prev_images,
              (SELECT in_flight FROM prev) AS prev_in_flight, (SELECT day::text FROM prev) AS prev_day,
              COALESCE((SELECT monthly_budget_usd FROM guild_settings WHERE guild_id = $1), $16::numeric)::float8 AS budget,
              (SELECT COALESCE(sum(cost_usd), 0) FROM cost_ledger WHERE guild_id = $1 AND created_at >= $15::date)::float8 AS spent`,
      actor.guildId,
      actor.userId,
      day,
      n,
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
    const limit = Number(r.daily);
    if (r.job_id !== null) {
      const budgetLeftUsd = Math.max(0, Number(r.budget) - Number(r.spent));
      return { ok: true, jobId: r.job_id, usedToday: Number(r.images), limit, budgetLeftUsd };
    }
    // Refused: the statement's snapshot may predate concurrent reservations, so read the row as it
    // is now to tell the member the real reason (refusals are off the hot path).
    const now = await this.rows<{ images: number; in_flight: number; day: string }[]>(
      `SELECT images, in_flight, day::text AS day FROM member_usage WHERE guild_id = $1 AND user_id = $2`,
      actor.guildId,
      actor.userId,
    );
    const row =
      now[0] ?? (r.prev_day === null ? undefined : { images: Number(r.prev_images), in_flight: Number(r.prev_in_flight), day: r.prev_day });
    const usedToday = row && row.day === day ? Number(row.images) : 0;
    const inFlight = Number(row?.in_flight ?? 0);
    let reason: 'quota' | 'blocked' | 'in_flight' = 'quota';
    if (limit === 0) reason = 'blocked';
    else if (usedToday + n <= limit && inFlight >= input.maxInFlight) reason = 'in_flight';
    return { ok: false, reason, usedToday, limit, inFlight };
  }

  async markRunning(jobId: string): Promise<boolean> {
    const n = await this.exec(`UPDATE jobs SET status = 'running', started_at = now() WHERE id = $1::uuid AND status = 'queued'`, jobId);
    return n > 0;
  }

  async settle(jobId: string, outcome: SettleOutcome): Promise<StoredJob | null> {
    const attempts = attemptsOf(outcome);
    const cost = attempts.reduce((s, a) => s + a.costUsd, 0);
    const refund = outcome.status !== 'succeeded';
    const result = outcome.status === 'succeeded' ? outcome.result : null;
    // One statement: the status guard makes a second settle a no-op, so the charge or refund and the
    // ledger rows happen exactly once whatever retries, duplicate events or restarts occur.
    const rows = await this.rows<JobRow[]>(
      `WITH j AS (
         UPDATE jobs SET status = $2::job_status, finished_at = now(), started_at = COALESCE(started_at, now()),
           backend = $3, seed = $4::bigint, cost_usd = $5::numeric, error_code = $6, error_message = $7,
           result = $8::jsonb, delivery_claimed_at = now()
         WHERE id = $1::uuid AND status IN ('queued', 'running')
         RETURNING *
       ),
       u AS (
         UPDATE member_usage m SET
           in_flight = GREATEST(m.in_flight - 1, 0),
           images = CASE WHEN $9::boolean AND m.day = j.day THEN GREATEST(m.images - j.image_count, 0) ELSE m.images END
         FROM j WHERE m.guild_id = j.guild_id AND m.user_id = j.user_id
         RETURNING 1
       ),
       l AS (
         INSERT INTO cost_ledger (job_id, attempt_no, guild_id, backend, outcome, seconds, cost_usd)
         SELECT j.id, a.ord::int, j.guild_id, a.e->>'backend', a.e->>'outcome', (a.e->>'seconds')::numeric, (a.e->>'costUsd')::numeric
         FROM j, jsonb_array_elements($10::jsonb) WITH ORDINALITY AS a(e, ord)
         ON CONFLICT (job_id, attempt_no) DO NOTHING
         RETURNING 1
       )
       SELECT ${JOB_COLUMNS} FROM j`,
      jobId,
      outcome.status,
      result?.backend ?? null,
      result?.seed ?? null,
      cost.toFixed(6),
      outcome.status === 'failed' ? outcome.code : null,
      outcome.status === 'failed' ? outcome.message : null,
      result ? JSON.stringify(result) : null,
      refund,
      JSON.stringify(attempts),
    );
    return rows[0] ? toStoredJob(rows[0]) : null;
  }

  async claimDelivery(jobId: string, staleAfterMs: number): Promise<StoredJob | null> {
    const rows = await this.rows<JobRow[]>(
      `UPDATE jobs j SET delivery_claimed_at = now()
       WHERE id = $1::uuid AND status IN ('succeeded', 'failed', 'cancelled') AND delivered_at IS NULL
         AND (delivery_claimed_at IS NULL OR delivery_claimed_at < now() - make_interval(secs => $2::float8 / 1000))
       RETURNING ${JOB_COLUMNS}`,
      jobId,
      staleAfterMs,
    );
    return rows[0] ? toStoredJob(rows[0]) : null;
  }

  async markDelivered(jobId: string, messageId: string | null, extraIds: readonly string[] = []): Promise<void> {
    await this.exec(
      `UPDATE jobs SET delivered_at = now(), result_message_id = COALESCE($2, result_message_id), result_extra_ids = $3::text[] WHERE id = $1::uuid`,
      jobId,
      messageId,
      extraIds,
    );
  }

  async rememberReply(jobId: string, messageId: string): Promise<void> {
    await this.exec(`UPDATE jobs SET reply_message_id = $2 WHERE id = $1::uuid AND reply_message_id IS NULL`, jobId, messageId);
  }

  async releaseDelivery(jobId: string): Promise<void> {
    await this.exec(`UPDATE jobs SET delivery_claimed_at = NULL WHERE id = $1::uuid AND delivered_at IS NULL`, jobId);
  }

  async get(jobId: string): Promise<StoredJob | null> {
    if (!/^[0-9a-f-]{36}$/i.test(jobId)) return null;
    const rows = await this.rows<JobRow[]>(`SELECT ${JOB_COLUMNS} FROM jobs j WHERE j.id = $1::uuid`, jobId);
    return rows[0] ? toStoredJob(rows[0]) : null;
  }

  async listUndelivered(since: Date, limit: number): Promise<StoredJob[]> {
    const rows = await this.rows<JobRow[]>(
      `SELECT ${JOB_COLUMNS} FROM jobs j WHERE j.delivered_at IS NULL AND j.created_at > $1 ORDER BY j.created_at LIMIT $2`,
      since,
      limit,
    );
    return rows.map(toStoredJob);
  }

  async usage(guildId: string, userId: string, day: string, monthStart: string) {
    const rows = await this.rows<{ today: number | null; in_flight: number | null; month: number }[]>(
      `SELECT
         (SELECT CASE WHEN day = $3::date THEN images ELSE 0 END FROM member_usage WHERE guild_id = $1 AND user_id = $2) AS today,
         (SELECT in_flight FROM member_usage WHERE guild_id = $1 AND user_id = $2) AS in_flight,
         (SELECT COALESCE(sum(image_count), 0)::int FROM jobs
            WHERE guild_id = $1 AND user_id = $2 AND day >= $4::date AND status IN ('queued', 'running', 'succeeded')) AS month`,
      guildId,
      userId,
      day,
      monthStart,
    );
    const queued = await this.rows<{ id: string; status: string; prompt: string; created_at: Date }[]>(
      `SELECT id::text, status::text, params->>'prompt' AS prompt, created_at FROM jobs
       WHERE guild_id = $1 AND user_id = $2 AND status IN ('queued', 'running') ORDER BY created_at LIMIT 10`,
      guildId,
      userId,
    );
    const r = rows[0]!;
    return {
      usedToday: Number(r.today ?? 0),
      usedThisMonth: Number(r.month),
      inFlight: Number(r.in_flight ?? 0),
      queued: queued.map((q) => ({ id: q.id, status: q.status, prompt: q.prompt, createdAt: q.created_at })),
    };
  }

  async dailyLimit(guildId: string, userId: string, deploymentDefault: number): Promise<number> {
    const rows = await this.rows<{ daily: number }[]>(
      `SELECT COALESCE(
         (SELECT daily_limit FROM user_quota_overrides WHERE guild_id = $1 AND user_id = $2),
         (SELECT daily_limit FROM guild_settings WHERE guild_id = $1),
         $3::int) AS daily`,
      guildId,
      userId,
      deploymentDefault,
    );
    return Number(rows[0]!.daily);
  }

  async recentRunTimes(limit: number) {
    // Walks the (status, delivered_at) index backwards: the newest deliveries are the newest finishes.
    const rows = await this.rows<unknown[]>(
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
