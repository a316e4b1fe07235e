import { UserError } from '../core/errors.js';
import { text } from '../core/messages.js';
import { dailyLimit, imagesToday, utcDay, utcMonthStart } from '../core/quota.js';
import { type Command, GUILD_ONLY } from './command.js';
import { NO_MENTIONS, quoteUserText } from './replies.js';

export const quota = {
  data: { name: 'quota', description: 'Your image quota: used and left today, this month, and your queued jobs', ...GUILD_ONLY },
  defer: 'ephemeral',
  async execute(ctx, interaction) {
    const guildId = interaction.guildId;
    if (!guildId) throw new UserError('not_in_guild', text.notInGuild);
    const at = ctx.now();
    const m = await ctx.jobs.memberQuota(guildId, interaction.user.id, utcMonthStart(at));
    const usage = {
      limit: dailyLimit(m.facts, ctx.config.DEFAULT_DAILY_IMAGES),
      usedToday: imagesToday(m.facts.usage, utcDay(at)),
      inFlight: m.facts.usage?.inFlight ?? 0,
      usedThisMonth: m.usedThisMonth,
      queued: m.queued,
    };
    // Positions are a nicety: without the queue the list still shows each job's status.
    const positions = await ctx.jobs.positionsOf(usage.queued.map((q) => q.id)).catch(() => new Map<string, number>());
    const lines = [text.quotaSummary({ ...usage, now: at })];
    for (const q of usage.queued) lines.push(text.quotaJob(q.status, positions.get(q.id) ?? null, quoteUserText(q.prompt, 80)));
    await interaction.editReply({ content: lines.join('\n'), allowedMentions: NO_MENTIONS });
  },
} satisfies Command;
