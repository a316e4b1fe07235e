import type pg from 'pg';
import type { PrivacyStore } from '../../core/ports.js';

/**
 * What erasing a job's data clears: the prompt and every parameter, the result summary (image keys,
 * seed, attempts), the interaction token and the ids of its messages. What stays is what the guild's
 * totals and the member's quota need: who, when, how many images, status, backend and cost (the
 * cost ledger keeps its rows; it never held a prompt).
 */
const ERASE = `params = NULL, result = NULL, seed = NULL, interaction_token = NULL, reply_message_id = NULL,
  result_message_id = NULL, result_extra_ids = '{}', error_message = NULL, parent_job_id = NULL, delivery_error = NULL,
  forgotten_at = now()`;

/** Only finished jobs are erased: one under way still needs its prompt to be posted. */
const FINISHED = `(delivered_at IS NOT NULL OR undeliverable_at IS NOT NULL)`;

/** Erasing members' data: on request (/forget), by age (RETENTION_DAYS) and dead interaction tokens. Each call is one statement. */
export class PgPrivacyStore implements PrivacyStore {
  constructor(private readonly pool: pg.Pool) {}

  async preview(guildId: string, userId: string): Promise<{ finished: number; underWay: number }> {
    const { rows } = await this.pool.query<{ finished: number; under_way: number }>(
      `SELECT count(*) FILTER (WHERE ${FINISHED})::int AS finished, count(*) FILTER (WHERE NOT ${FINISHED})::int AS under_way
       FROM jobs WHERE guild_id = $1 AND user_id = $2 AND forgotten_at IS NULL`,
      [guildId, userId],
    );
    return { finished: rows[0]!.finished, underWay: rows[0]!.under_way };
  }

  async forget(guildId: string, userId: string): Promise<{ forgotten: number; underWay: number }> {
    // The erasure and its audit row (who, how many; never what) in one statement.
    const { rows } = await this.pool.query<{ forgotten: number; under_way: number }>(
      `WITH f AS (
         UPDATE jobs SET ${ERASE}, forgotten_reason = 'member'
         WHERE guild_id = $1 AND user_id = $2 AND forgotten_at IS NULL AND ${FINISHED}
         RETURNING 1
       ),
       a AS (
         INSERT INTO audit_log (guild_id, actor_id, action, target, after)
         SELECT $1, $2, 'forget', $2, jsonb_build_object('jobs', (SELECT count(*) FROM f))
         RETURNING 1
       )
       SELECT (SELECT count(*) FROM f)::int AS forgotten,
              (SELECT count(*) FROM jobs WHERE guild_id = $1 AND user_id = $2 AND forgotten_at IS NULL AND NOT ${FINISHED})::int AS under_way,
              (SELECT count(*) FROM a) AS audited`,
      [guildId, userId],
    );
    return { forgotten: rows[0]!.forgotten, underWay: rows[0]!.under_way };
  }

  async eraseOlderThan(cutoff: Date, limit: number): Promise<number> {
    // Oldest first on jobs_retained_idx; SKIP LOCKED lets several bot processes share the work.
    const res = await this.pool.query(
      `UPDATE jobs SET ${ERASE}, forgotten_reason = 'retention'
       WHERE id IN (SELECT id FROM jobs WHERE forgotten_at IS NULL AND created_at < $1 AND ${FINISHED}
                    ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)`,
      [cutoff, limit],
    );
    return res.rowCount ?? 0;
  }

  async eraseDeadTokens(createdBefore: Date): Promise<number> {
    // jobs_live_token_idx holds only the rows that still have a token: a few minutes' worth.
    const res = await this.pool.query(`UPDATE jobs SET interaction_token = NULL WHERE interaction_token IS NOT NULL AND created_at < $1`, [
      createdBefore,
    ]);
    return res.rowCount ?? 0;
  }
}
