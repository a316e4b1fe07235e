/**
 * The paid-provider budget rules. A guild's monthly budget is its own setting, else the
 * deployment's default; what it spent is every cost-ledger row since the first of the UTC month.
 * The SQL fragments beside the rules are what the store's statements use.
 */

/** Rule: the guild's monthly budget in force. In SQL, for a guild id expression and the deployment default. */
export function monthlyBudgetSql(guild: string, deploymentDefault: string): string {
  return `COALESCE((SELECT monthly_budget_usd FROM guild_settings WHERE guild_id = ${guild}), ${deploymentDefault}::numeric)`;
}

/** Rule: what the guild spent this month: the sum of its ledger since the month's first day. In SQL. */
export function spentSinceSql(guild: string, monthStart: string): string {
  return `(SELECT COALESCE(sum(cost_usd), 0) FROM cost_ledger WHERE guild_id = ${guild} AND created_at >= ${monthStart}::date)`;
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
