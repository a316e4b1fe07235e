import type pg from 'pg';
import { spentInMonthSql } from '../../core/budget.js';
import type { BackendLatency, GuildStats } from '../../core/ports.js';

/** Read-only aggregates for `/admin stats` and `/admin backends`. */
export class StatsStore {
  constructor(private readonly pool: pg.Pool) {}

  private async rows<T>(sql: string, ...params: unknown[]): Promise<T[]> {
    return (await this.pool.query(sql, params)).rows as T[];
  }

  async guild(guildId: string, since: Date): Promise<GuildStats> {
    const q = <T>(sql: string) => this.rows<T>(sql, guildId, since);
    const [totals, byDay, byBackend, topUsers, byModel] = await Promise.all([
      q<{ jobs: number; images: number; failures: number; cost: number }>(
        `SELECT count(*)::int AS jobs,
                COALESCE(sum(image_count) FILTER (WHERE status = 'succeeded'), 0)::int AS images,
                count(*) FILTER (WHERE status = 'failed')::int AS failures,
                COALESCE(sum(cost_usd), 0)::float8 AS cost
         FROM jobs WHERE guild_id = $1 AND created_at >= $2`,
      ),
      q<{ day: string; jobs: number; cost: number }>(
        `SELECT to_char(date_trunc('day', created_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD') AS day, count(*)::int AS jobs,
                COALESCE(sum(cost_usd), 0)::float8 AS cost
         FROM jobs WHERE guild_id = $1 AND created_at >= $2 GROUP BY 1 ORDER BY 1`,
      ),
      q<{ backend: string; attempts: number; cost: number }>(
        `SELECT backend, count(*)::int AS attempts, COALESCE(sum(cost_usd), 0)::float8 AS cost
         FROM cost_ledger WHERE guild_id = $1 AND created_at >= $2 AND outcome <> 'skipped' GROUP BY backend ORDER BY cost DESC, attempts DESC`,
      ),
      q<{ user_id: string; images: number }>(
        `SELECT user_id, COALESCE(sum(image_count), 0)::int AS images FROM jobs
         WHERE guild_id = $1 AND created_at >= $2 AND status = 'succeeded' GROUP BY user_id ORDER BY images DESC LIMIT 5`,
      ),
      q<{ model: string | null; model_version: string | null; jobs: number; images: number; cost: number }>(
        `SELECT model, model_version, count(*)::int AS jobs, COALESCE(sum(image_count), 0)::int AS images,
                COALESCE(sum(cost_usd), 0)::float8 AS cost
         FROM jobs WHERE guild_id = $1 AND created_at >= $2 AND status = 'succeeded'
         GROUP BY model, model_version ORDER BY jobs DESC, model LIMIT 10`,
      ),
    ]);
    const t = totals[0]!;
    return {
      jobs: t.jobs,
      images: t.images,
      failures: t.failures,
      costUsd: Number(t.cost),
      byDay: byDay.map((d) => ({ day: d.day, jobs: d.jobs, costUsd: Number(d.cost) })),
      byBackend: byBackend.map((b) => ({ backend: b.backend, attempts: b.attempts, costUsd: Number(b.cost) })),
      topUsers: topUsers.map((u) => ({ userId: u.user_id, images: u.images })),
      byModel: byModel.map((m) => ({
        model: m.model ?? 'not recorded',
        version: m.model_version,
        jobs: m.jobs,
        images: m.images,
        costUsd: Number(m.cost),
      })),
    };
  }

  /** Latency percentiles and success rate per backend over all guilds (backends are shared). */
  async backends(since: Date): Promise<BackendLatency[]> {
    const rows = await this.rows<{ backend: string; attempts: number; ok: number; p50: number | null; p95: number | null }>(
      `SELECT backend, count(*)::int AS attempts, count(*) FILTER (WHERE outcome = 'succeeded')::int AS ok,
              percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds)::float8 AS p50,
              percentile_cont(0.95) WITHIN GROUP (ORDER BY seconds)::float8 AS p95
       FROM cost_ledger WHERE created_at >= $1 AND outcome IN ('succeeded', 'failed') GROUP BY backend ORDER BY backend`,
      since,
    );
    return rows.map((r) => ({
      backend: r.backend,
      attempts: r.attempts,
      successRate: r.attempts > 0 ? r.ok / r.attempts : 0,
      p50s: Number(r.p50 ?? 0),
      p95s: Number(r.p95 ?? 0),
    }));
  }

  /** Paid spend of a guild since the start of the month. */
  async spentInMonth(guildId: string, monthStart: string): Promise<number> {
    const rows = await this.rows<{ spent: number }>(`SELECT ${spentInMonthSql('$1', '$2')}::float8 AS spent`, guildId, monthStart);
    return Number(rows[0]!.spent);
  }

  /**
   * Records that a budget threshold was announced this month for this budget; false when it already was.
   * A notice sent for another amount is taken over: after /admin budget the new budget gets its own alerts.
   * One statement, so jobs settling at once still announce each threshold once.
   */
  async claimBudgetNotice(guildId: string, monthStart: string, threshold: number, budgetUsd: number): Promise<boolean> {
    const res = await this.pool.query(
      `INSERT INTO budget_notices (guild_id, month, threshold, budget_usd) VALUES ($1, $2::date, $3, $4)
       ON CONFLICT (guild_id, month, threshold) DO UPDATE SET budget_usd = EXCLUDED.budget_usd, created_at = now()
       WHERE budget_notices.budget_usd IS DISTINCT FROM EXCLUDED.budget_usd`,
      [guildId, monthStart, threshold, budgetUsd],
    );
    return (res.rowCount ?? 0) > 0;
  }
}
