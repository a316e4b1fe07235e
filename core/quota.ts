/**
 * The quota rules: how many images a member may have today, how many jobs at once, why a request
 * is refused, what a refund gives back and whose job goes first. Days roll over at UTC midnight;
 * months are calendar months in UTC.
 *
 * Postgres applies some of these inside one atomic statement (the reservation, the settle), so a
 * rule that must hold there has its SQL fragment right beside the function: the store builds its
 * statements from these fragments and nothing else. tests/core/quota.test.ts and
 * tests/bot/job-store.test.ts run the same cases (tests/quota-cases.ts) through both.
 */

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

/** What Postgres holds about one member of one guild: the facts the rules decide on. */
export interface QuotaFacts {
  /** `user_quota_overrides.daily_limit`, if a moderator set one for this member. */
  userOverride: number | null;
  /** `guild_settings.daily_limit`, if the guild's moderators set one. */
  guildDefault: number | null;
  /** The member's `member_usage` row: images counted on `day`, and jobs queued or running. */
  usage: { day: string; images: number; inFlight: number } | null;
}

/** The deployment's side of the rules (DEFAULT_DAILY_IMAGES, MAX_QUEUED_PER_USER). */
export interface QuotaSettings {
  deploymentDailyLimit: number;
  maxInFlight: number;
}

/**
 * Rule: the daily limit in force is the member's override, else the guild's default, else the
 * deployment's. 0 is a real limit: the member is blocked.
 */
export function dailyLimit(f: Pick<QuotaFacts, 'userOverride' | 'guildDefault'>, deploymentDefault: number): number {
  return f.userOverride ?? f.guildDefault ?? deploymentDefault;
}

/** {@link dailyLimit} in SQL: the arguments are SQL expressions for the guild, the member and the deployment default. */
export function dailyLimitSql(guild: string, user: string, deploymentDefault: string): string {
  return `COALESCE(
    (SELECT daily_limit FROM user_quota_overrides WHERE guild_id = ${guild} AND user_id = ${user}),
    (SELECT daily_limit FROM guild_settings WHERE guild_id = ${guild}),
    ${deploymentDefault}::int)`;
}

/** Rule: images count on their UTC day only; a usage row from an earlier day counts as none today. */
export function imagesToday(usage: QuotaFacts['usage'], day: string): number {
  return usage && usage.day === day ? usage.images : 0;
}

/** {@link imagesToday} in SQL, for a `member_usage` row alias and a day expression. */
export function imagesTodaySql(row: string, day: string): string {
  return `(CASE WHEN ${row}.day = ${day} THEN ${row}.images ELSE 0 END)`;
}

/** Why a request was refused; admitted otherwise. */
export type Refusal = 'blocked' | 'in_flight' | 'quota';

export type Admission =
  | { ok: true; limit: number; usedToday: number }
  | { ok: false; reason: Refusal; limit: number; usedToday: number; inFlight: number };

/**
 * Rule: `asked` images are admitted when today's images plus them stay within the daily limit and
 * the member has fewer than `maxInFlight` jobs queued or running. A refusal says why: blocked when
 * the limit is 0, in_flight when the images would fit but too many jobs are under way, else quota.
 */
export function admission(f: QuotaFacts, asked: number, day: string, s: QuotaSettings): Admission {
  const limit = dailyLimit(f, s.deploymentDailyLimit);
  const usedToday = imagesToday(f.usage, day);
  const inFlight = f.usage?.inFlight ?? 0;
  const fits = usedToday + asked <= limit;
  if (fits && inFlight < s.maxInFlight) return { ok: true, limit, usedToday };
  const reason: Refusal = limit === 0 ? 'blocked' : fits ? 'in_flight' : 'quota';
  return { ok: false, reason, limit, usedToday, inFlight };
}

/**
 * {@link admission}'s test in SQL, as the reservation's conditional upsert applies it under the
 * member's row lock: `used`, `asked`, `inFlight`, `limit` and `maxInFlight` are SQL expressions.
 */
export function admitsSql(o: { used: string; asked: string; inFlight: string; limit: string; maxInFlight: string }): string {
  return `${o.used} + ${o.asked} <= ${o.limit} AND ${o.inFlight} < ${o.maxInFlight}`;
}

/**
 * Rule: a refund gives the images back to the day they were counted on; a job reserved yesterday
 * and refunded today leaves today's count alone. In SQL, for a `member_usage` row alias and the
 * job's day and image count.
 */
export function refundedImagesSql(row: string, jobDay: string, jobImages: string): string {
  return `CASE WHEN ${row}.day = ${jobDay} THEN GREATEST(${row}.images - ${jobImages}, 0) ELSE ${row}.images END`;
}

/**
 * Rule: images counted on the day before `day`, for a `member_usage` row alias as the upsert
 * finds it: its own day before when it is of `day` already, its images when it is of the day
 * before, else none. In SQL.
 */
export function prevDayImagesSql(row: string, day: string): string {
  return `CASE WHEN ${row}.day = ${day} THEN ${row}.prev_images WHEN ${row}.day = ${day} - 1 THEN ${row}.images ELSE 0 END`;
}

/** Rule: a refund of a job counted on the day before the row's day gives its images back there. In SQL. */
export function refundedPrevImagesSql(row: string, jobDay: string, jobImages: string): string {
  return `CASE WHEN ${row}.day = ${jobDay} + 1 THEN GREATEST(${row}.prev_images - ${jobImages}, 0) ELSE ${row}.prev_images END`;
}

const DAY_MS = 86_400_000;

/**
 * Rule: a member's images of the last 24 hours, for their turn in the queue: today's, plus the
 * share of yesterday's that the last 24 hours still cover (yesterday's taken as spread over it).
 * The UTC day's count starts again at midnight; by it alone, a member who had just made many
 * images went ahead of everyone who waited since before midnight. This one moves smoothly: at
 * midnight it is yesterday's count, and yesterday's weight falls to nothing by the next midnight.
 * Read from the member's one usage row, so the reservation stays one statement on one row.
 */
export function recentImages(today: number, yesterday: number, now: Date): number {
  return today + Math.round(yesterday * (1 - msSinceUtcMidnight(now) / DAY_MS));
}

function msSinceUtcMidnight(now: Date): number {
  return DAY_MS - msUntilUtcMidnight(now);
}

/**
 * Fairness: BullMQ serves lower priority numbers first, FIFO within one number. A member's turn
 * depends on how many images they made in the last 24 hours before this job (recentImages), so
 * one member's batch never starves others.
 */
export function queuePriority(usedBefore: number): number {
  return Math.min(usedBefore + 1, 2_000_000);
}

/** Slots of member usage inside one guild turn on the shared queue; more usage than this ranks as this. */
export const MEMBER_SPAN = 1000;
/** BullMQ's highest priority is 2^21 - 1. */
const MAX_PRIORITY = 2_097_151;

/** The member's part of a shared-queue priority: their usage, as on a guild's own queue, capped inside one turn. */
export function memberPart(usedBefore: number): number {
  return Math.min(queuePriority(usedBefore), MEMBER_SPAN - 1);
}

/**
 * Fairness between guilds on the shared queue: a job's turn is how many of its guild's waiting jobs
 * go before it in its guild's own (member-fair) order: those whose member part is not larger. Its
 * priority ranks it behind every guild's jobs of earlier turns, so one busy guild cannot starve the
 * others, and inside one turn by member part, so member fairness holds inside the guild: a member
 * with nothing today still goes ahead of a flooding member's second job of the same guild.
 * core/io/fair-share.ts counts the turn; the member part of a queued job is its priority modulo
 * MEMBER_SPAN.
 */
export function sharedQueuePriority(guildTurn: number, usedBefore: number): number {
  const turn = Math.max(0, Math.floor(guildTurn));
  return Math.min(turn * MEMBER_SPAN + memberPart(usedBefore), MAX_PRIORITY);
}
