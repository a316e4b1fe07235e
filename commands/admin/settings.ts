import type { ChatInputCommandInteraction } from 'discord.js';
import { adminText } from '../../core/messages.js';
import { NSFW_MODES, parseBannedWords } from '../../core/policy.js';
import type { CommandContext } from '../context.js';
import { quoteUserText } from '../replies.js';

/** What an /admin subcommand answers, and the notice it leaves in the log channel when it changed something. */
export interface AdminResult {
  reply: string;
  notice?: string;
  embeds?: object[];
  files?: { name: string; data: Buffer }[];
}

export type AdminHandler = (ctx: CommandContext, i: ChatInputCommandInteraction, guildId: string) => Promise<AdminResult>;

export const quotaDefault: AdminHandler = async (ctx, i, guildId) => {
  const daily = i.options.getInteger('daily', true);
  const before = (await ctx.settings.policy(guildId)).dailyLimit;
  await ctx.settings.updateGuild(guildId, i.user.id, 'quota-default', { dailyLimit: daily });
  const msg = adminText.quotaDefault(before, daily);
  return { reply: msg, notice: msg };
};

export const quotaUser: AdminHandler = async (ctx, i, guildId) => {
  const user = i.options.getUser('user', true);
  const daily = i.options.getInteger('daily', true);
  const before = await ctx.settings.setUserOverride(guildId, i.user.id, user.id, daily);
  const msg = adminText.quotaUser(user.id, before, daily);
  return { reply: msg, notice: msg };
};

export const quotaUserClear: AdminHandler = async (ctx, i, guildId) => {
  const user = i.options.getUser('user', true);
  const before = await ctx.settings.clearUserOverride(guildId, i.user.id, user.id);
  const msg = adminText.quotaUserClear(user.id, before);
  return { reply: msg, notice: before === null ? undefined : msg };
};

export const nsfw: AdminHandler = async (ctx, i, guildId) => {
  const mode = NSFW_MODES.find((m) => m === i.options.getString('mode', true)) ?? 'strict';
  const before = (await ctx.settings.policy(guildId)).nsfwMode;
  await ctx.settings.updateGuild(guildId, i.user.id, 'nsfw', { nsfwMode: mode });
  const msg = adminText.nsfw(before, mode);
  return { reply: msg, notice: msg };
};

export const bannedWords: AdminHandler = async (ctx, i, guildId) => {
  const action = i.options.getString('action', true);
  if (action === 'list') return { reply: quoteUserText(adminText.bannedList((await ctx.settings.policy(guildId)).bannedWords), 1900) };
  const words = parseBannedWords(i.options.getString('words') ?? '');
  if (words.length === 0) return { reply: adminText.bannedNeedWords };
  const op = action === 'remove' ? 'remove' : 'add';
  const { changed, after } = await ctx.settings.changeBannedWords(guildId, i.user.id, op, words);
  const unchanged = words.length - changed.length;
  const msg =
    op === 'add'
      ? adminText.bannedAdded(changed.length, unchanged, after.length)
      : adminText.bannedRemoved(changed.length, unchanged, after.length);
  // Nothing added or removed: no "changed a setting" notice.
  return { reply: msg, notice: changed.length > 0 ? msg : undefined };
};

export const budget: AdminHandler = async (ctx, i, guildId) => {
  const usd = i.options.getNumber('monthly-usd', true);
  const before = (await ctx.settings.policy(guildId)).monthlyBudgetUsd;
  await ctx.settings.updateGuild(guildId, i.user.id, 'budget', { monthlyBudgetUsd: usd });
  const msg = adminText.budget(before, usd);
  return { reply: msg, notice: msg };
};

export const gpuPrice: AdminHandler = async (ctx, i, guildId) => {
  const usd = i.options.getNumber('usd-per-hour', true);
  const before = (await ctx.settings.policy(guildId)).gpuUsdPerHour;
  await ctx.settings.updateGuild(guildId, i.user.id, 'gpu-price', { gpuUsdPerHour: usd });
  const msg = adminText.gpuPrice(before, usd);
  return { reply: msg, notice: msg };
};

export const logChannel: AdminHandler = async (ctx, i, guildId) => {
  const channel = i.options.getChannel('channel', true);
  await ctx.settings.updateGuild(guildId, i.user.id, 'log-channel', { logChannelId: channel.id });
  const msg = adminText.logChannel(channel.id);
  return { reply: msg, notice: msg };
};
