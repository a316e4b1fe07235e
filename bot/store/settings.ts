import type { NsfwMode } from '../../core/policy.js';
import type { GuildPolicy, GuildSettings } from '../../core/ports.js';
import type { Database } from './prisma.js';

/** The NSFW mode as Postgres spells it (an enum value cannot hold a hyphen) and back. */
const toDbMode = (m: NsfwMode) => (m === 'nsfw-channels' ? ('nsfw_channels' as const) : ('strict' as const));
const fromDbMode = (m: string | null | undefined): NsfwMode => (m === 'nsfw_channels' ? 'nsfw-channels' : 'strict');

export interface Defaults {
  dailyLimit: number;
  monthlyBudgetUsd: number;
}

const toJson = (v: unknown) => (v === undefined ? undefined : (JSON.parse(JSON.stringify(v)) as object));

/**
 * Guild settings, per-member overrides and banned words. Every change writes its audit row in the
 * same transaction, so a change without an audit trail cannot happen.
 */
export class SettingsStore implements GuildSettings {
  private readonly cache = new Map<string, { at: number; policy: Promise<GuildPolicy> }>();

  constructor(
    private readonly db: Pick<Database, 'pool' | 'prisma'>,
    private readonly defaults: Defaults,
    /** How long a guild's policy is reused; changes made in this process apply at once. */
    private readonly cacheMs = 5000,
    /** After /admin budget: the month's shared reservations take the new limit at once (queued jobs included). */
    private readonly onBudgetChange?: (guildId: string, monthlyBudgetUsd: number) => Promise<void>,
  ) {}

  /** The guild's policy, cached briefly: every /imagine needs it and it rarely changes. */
  policy(guildId: string): Promise<GuildPolicy> {
    const hit = this.cache.get(guildId);
    const now = Date.now();
    if (hit && now - hit.at < this.cacheMs) return hit.policy;
    const policy = this.loadPolicy(guildId);
    this.cache.set(guildId, { at: now, policy });
    policy.catch(() => this.cache.delete(guildId));
    if (this.cache.size > 10_000) this.cache.clear();
    return policy;
  }

  private invalidate(guildId: string): void {
    this.cache.delete(guildId);
  }

  /** One statement: the guild's settings row (if any) and its banned words. */
  private async loadPolicy(guildId: string): Promise<GuildPolicy> {
    const { rows } = await this.db.pool.query<{
      daily_limit: number | null;
      nsfw_mode: string | null;
      monthly_budget_usd: number | null;
      log_channel_id: string | null;
      gpu_usd_per_hour: number | null;
      words: string[];
    }>(
      `SELECT s.daily_limit, s.nsfw_mode::text AS nsfw_mode, s.monthly_budget_usd::float8 AS monthly_budget_usd, s.log_channel_id,
              s.gpu_usd_per_hour::float8 AS gpu_usd_per_hour,
              ARRAY(SELECT word FROM banned_words WHERE guild_id = $1 ORDER BY word) AS words
       FROM (SELECT 1) AS one LEFT JOIN guild_settings s ON s.guild_id = $1`,
      [guildId],
    );
    const s = rows[0];
    return {
      guildId,
      dailyLimit: s?.daily_limit ?? this.defaults.dailyLimit,
      dailyLimitSet: s?.daily_limit !== null && s?.daily_limit !== undefined,
      nsfwMode: fromDbMode(s?.nsfw_mode),
      monthlyBudgetUsd: s?.monthly_budget_usd ?? this.defaults.monthlyBudgetUsd,
      logChannelId: s?.log_channel_id ?? null,
      bannedWords: s?.words ?? [],
      gpuUsdPerHour: s?.gpu_usd_per_hour ?? null,
    };
  }

  /** Changes guild-level settings and audits the before/after of exactly what changed. */
  async updateGuild(
    guildId: string,
    actorId: string,
    action: string,
    patch: { dailyLimit?: number; nsfwMode?: NsfwMode; monthlyBudgetUsd?: number; logChannelId?: string; gpuUsdPerHour?: number },
  ): Promise<{ before: Record<string, unknown>; after: Record<string, unknown> }> {
    this.invalidate(guildId);
    const prisma = await this.db.prisma();
    const changed = await prisma.$transaction(async (tx) => {
      const cur = await tx.guildSettings.findUnique({ where: { guildId } });
      const data = {
        ...(patch.dailyLimit !== undefined ? { dailyLimit: patch.dailyLimit } : {}),
        ...(patch.nsfwMode !== undefined ? { nsfwMode: toDbMode(patch.nsfwMode) } : {}),
        ...(patch.monthlyBudgetUsd !== undefined ? { monthlyBudgetUsd: patch.monthlyBudgetUsd } : {}),
        ...(patch.logChannelId !== undefined ? { logChannelId: patch.logChannelId } : {}),
        ...(patch.gpuUsdPerHour !== undefined ? { gpuUsdPerHour: patch.gpuUsdPerHour } : {}),
      };
      // "before" is what was in force, defaults included, so the audit trail reads without the config.
      const inForce: Record<string, unknown> = {
        dailyLimit: cur?.dailyLimit ?? this.defaults.dailyLimit,
        nsfwMode: fromDbMode(cur?.nsfwMode),
        monthlyBudgetUsd: cur?.monthlyBudgetUsd != null ? Number(cur.monthlyBudgetUsd) : this.defaults.monthlyBudgetUsd,
        logChannelId: cur?.logChannelId ?? null,
        gpuUsdPerHour: cur?.gpuUsdPerHour != null ? Number(cur.gpuUsdPerHour) : null,
      };
      const before: Record<string, unknown> = {};
      for (const k of Object.keys(data)) before[k] = inForce[k];
      await tx.guildSettings.upsert({ where: { guildId }, create: { guildId, ...data }, update: data });
      await tx.auditLog.create({
        data: { guildId, actorId, action, before: toJson(before), after: toJson(patch) },
      });
      return { before, after: patch };
    });
    // Again once committed: a read while the write was in flight cached the old policy.
    this.invalidate(guildId);
    if (patch.monthlyBudgetUsd !== undefined) await this.onBudgetChange?.(guildId, patch.monthlyBudgetUsd);
    return changed;
  }

  async setUserOverride(guildId: string, actorId: string, userId: string, dailyLimit: number): Promise<number | null> {
    const prisma = await this.db.prisma();
    return prisma.$transaction(async (tx) => {
      const cur = await tx.userQuotaOverride.findUnique({ where: { guildId_userId: { guildId, userId } } });
      await tx.userQuotaOverride.upsert({
        where: { guildId_userId: { guildId, userId } },
        create: { guildId, userId, dailyLimit, setBy: actorId },
        update: { dailyLimit, setBy: actorId },
      });
      await tx.auditLog.create({
        data: {
          guildId,
          actorId,
          action: 'quota-user',
          target: userId,
          before: toJson({ daily: cur?.dailyLimit ?? null }),
          after: { daily: dailyLimit },
        },
      });
      return cur?.dailyLimit ?? null;
    });
  }

  async clearUserOverride(guildId: string, actorId: string, userId: string): Promise<number | null> {
    const prisma = await this.db.prisma();
    return prisma.$transaction(async (tx) => {
      const cur = await tx.userQuotaOverride.findUnique({ where: { guildId_userId: { guildId, userId } } });
      if (cur) await tx.userQuotaOverride.delete({ where: { guildId_userId: { guildId, userId } } });
      await tx.auditLog.create({
        data: {
          guildId,
          actorId,
          action: 'quota-user-clear',
          target: userId,
          before: toJson({ daily: cur?.dailyLimit ?? null }),
          after: { daily: null },
        },
      });
      return cur?.dailyLimit ?? null;
    });
  }

  async changeBannedWords(
    guildId: string,
    actorId: string,
    op: 'add' | 'remove',
    words: string[],
  ): Promise<{ changed: string[]; after: string[] }> {
    this.invalidate(guildId);
    const prisma = await this.db.prisma();
    const result = await prisma.$transaction(async (tx) => {
      const before = (await tx.bannedWord.findMany({ where: { guildId }, orderBy: { word: 'asc' } })).map((w) => w.word);
      if (op === 'add') {
        await tx.bannedWord.createMany({ data: words.map((word) => ({ guildId, word, addedBy: actorId })), skipDuplicates: true });
      } else {
        await tx.bannedWord.deleteMany({ where: { guildId, word: { in: words } } });
      }
      const after = (await tx.bannedWord.findMany({ where: { guildId }, orderBy: { word: 'asc' } })).map((w) => w.word);
      const had = new Set(before);
      const changed = words.filter((w) => had.has(w) === (op === 'remove'));
      // An audit row records a change; a word already listed (or absent) changed nothing.
      if (changed.length > 0) {
        await tx.auditLog.create({
          data: { guildId, actorId, action: `banned-words ${op}`, before: toJson(before), after: toJson(after) },
        });
      }
      return { changed, after };
    });
    // Again once committed: a read while the write was in flight cached the old list.
    this.invalidate(guildId);
    return result;
  }
}
