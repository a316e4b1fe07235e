/**
 * The paid-provider budget rules. A guild's monthly budget is its own setting, else the
 * deployment's default; what it spent is its paid providers' cost-ledger rows since the first of
 * the UTC month (failed and cancelled attempts included: providers bill them). The SQL fragments
 * beside the rules are what the store's statements use; the reservation rules are what the Redis
 * script (core/io/budget-reservations.ts) applies atomically across workers.
 */

/** Rule: the guild's monthly budget in force. In SQL, for a guild id expression and the deployment default. */
export function monthlyBudgetSql(guild: string, deploymentDefault: string): string {
  return `COALESCE((SELECT monthly_budget_usd FROM guild_settings WHERE guild_id = ${guild}), ${deploymentDefault}::numeric)`;
}

/**
 * Rule: a ledger row is paid-provider spend when its backend's family (`replicate`,
 * `huggingface#2`…) is a paid one, and counts in the UTC month it was booked in.
 *
 * What the guild spent in a month is the sum of those rows. The sum is kept, not recomputed: reading
 * it is one row (`guild_month_spend`), where summing the ledger at every admission grew with the
 * month's traffic (72 ms p50 per /imagine at 100 000 paid attempts). The database keeps it: a
 * trigger on cost_ledger adds each paid row as it is inserted, whichever statement (or bot version)
 * inserts it (prisma/migrations/*_month_spend, which states this rule in SQL;
 * tests/bot/month-spend.test.ts holds the two together). In SQL, for a guild id expression and the
 * month's first day.
 */
export function spentInMonthSql(guild: string, monthStart: string): string {
  return `COALESCE((SELECT spent_usd FROM guild_month_spend WHERE guild_id = ${guild} AND month = ${monthStart}::date), 0)`;
}

/** Dollars left this month; paid providers may serve a job only while some are. */
export function budgetLeft(budgetUsd: number, spentUsd: number): number {
  return Math.max(0, budgetUsd - spentUsd);
}

/** The highest alert threshold (80 or 100 % of the monthly budget) that the spend has reached, if any. */
export function budgetThresholdReached(spentUsd: number, budgetUsd: number): 80 | 100 | null {
  if (budgetUsd <= 0) return null;
  const ratio = spentUsd / budgetUsd;
  if (ratio >= 1) return 100;
  if (ratio >= 0.8) return 80;
  return null;
}

/** The budget month a moment falls in (UTC), as the reservations' key names it: `2026-12`. */
export function budgetMonth(now: Date): string {
  return now.toISOString().slice(0, 7);
}

/** When a month's reservations may go: two days after it ends (an attempt straddling midnight still settles into it). */
export function budgetMonthExpiresAt(month: string): number {
  const [y, m] = month.split('-').map(Number) as [number, number];
  return Math.floor(Date.UTC(y, m, 3) / 1000);
}

/** Dollars as the integer micro-dollars the reservations count in (the ledger's own precision). */
export function usdToMicros(usd: number): number {
  return Math.max(0, Math.round(usd * 1e6));
}

/**
 * The least run time a time-billed attempt sets aside. Its cap is met one poll and a cancel's round
 * trip early (worker/backends/replicate.ts), so an attempt holding less, after a few very fast runs,
 * would be cancelled before it could finish and the job sent back to wait for the box.
 */
export const LEAST_CAPPED_RUN_S = 2;

/**
 * Rule: what a paid attempt sets aside before it starts. Billed per image, the price is exact;
 * billed by time (`usdPerSecond`), twice the estimate (a slow run is not cut short needlessly) and
 * never under LEAST_CAPPED_RUN_S, and the attempt is cancelled before it bills more than it set
 * aside. Near the end of the budget an attempt may take less than it wants, never less than its
 * estimate (or that least run time).
 */
export function reservationWanted(estimateUsd: number, usdPerSecond: number | undefined): { wantUsd: number; leastUsd: number } {
  if (usdPerSecond === undefined) return { wantUsd: estimateUsd, leastUsd: estimateUsd };
  const least = Math.max(estimateUsd, LEAST_CAPPED_RUN_S * usdPerSecond);
  return { wantUsd: Math.max(estimateUsd * 2, least), leastUsd: least };
}
