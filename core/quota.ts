/** Pure quota arithmetic. Days roll over at UTC midnight; months are calendar months in UTC. */

/** The UTC calendar day of an instant, as YYYY-MM-DD. */
export function utcDay(now: Date): string {
  return now.toISOString().slice(0, 10);
}

/** First day of the instant's UTC month, as YYYY-MM-DD. */
export function utcMonthStart(now: Date): string {
  return `${now.toISOString().slice(0, 7)}-01`;
}

/** Milliseconds until the next UTC midnight, when daily quotas reset. */
export function msUntilUtcMidnight(now: Date): number {
  const next = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1);
  return next - now.getTime();
}

/** A per-user override wins over the guild default, which wins over the deployment default. */
export function effectiveDailyLimit(limits: {
  userOverride?: number | null;
  guildDefault?: number | null;
  deploymentDefault: number;
}): number {
  return limits.userOverride ?? limits.guildDefault ?? limits.deploymentDefault;
}

/** Images counted today from a stored usage row: a row from an earlier day counts as zero. */
export function usedToday(row: { day: string; images: number } | null, today: string): number {
  return row && row.day === today ? row.images : 0;
}
