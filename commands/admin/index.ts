import { ApplicationCommandOptionType, ChannelType, PermissionFlagsBits } from 'discord.js';
import { adminText } from '../../core/messages.js';
import { NSFW_MODES } from '../../core/policy.js';
import { type Command, GUILD_ONLY } from '../command.js';
import { requireModerator } from '../guards.js';
import { NO_MENTIONS } from '../replies.js';
import { gpuLink, gpuRotate, gpuStatus, gpuUnlink } from './gpu.js';
import { backends, stats } from './reports.js';
import { type AdminHandler, bannedWords, budget, gpuPrice, logChannel, nsfw, quotaDefault, quotaUser, quotaUserClear } from './settings.js';

const T = ApplicationCommandOptionType;

const HANDLERS: Record<string, AdminHandler> = {
  'quota-default': quotaDefault,
  'quota-user': quotaUser,
  'quota-user-clear': quotaUserClear,
  nsfw,
  'banned-words': bannedWords,
  budget,
  'gpu-price': gpuPrice,
  'log-channel': logChannel,
  stats,
  backends,
  'gpu link': gpuLink,
  'gpu status': gpuStatus,
  'gpu unlink': gpuUnlink,
  'gpu rotate': gpuRotate,
};

const linkOption = {
  type: T.String,
  name: 'link',
  description: 'The link id, as /admin gpu status shows it',
  required: true,
  min_length: 16,
  max_length: 16,
} as const;

/** `/admin`: hidden from members without Manage Guild by Discord, and re-checked by the bot on every call. */
export const admin = {
  data: {
    name: 'admin',
    description: 'Moderator settings: quotas, NSFW policy, banned words, budget, stats, backends, GPU boxes',
    ...GUILD_ONLY,
    default_member_permissions: PermissionFlagsBits.ManageGuild.toString(),
    options: [
      {
        type: T.Subcommand,
        name: 'quota-default',
        description: "The server's default daily image limit per member",
        options: [
          { type: T.Integer, name: 'daily', description: 'Images per member per day', required: true, min_value: 0, max_value: 100000 },
        ],
      },
      {
        type: T.Subcommand,
        name: 'quota-user',
        description: "Set one member's daily limit (0 blocks them)",
        options: [
          { type: T.User, name: 'user', description: 'Member', required: true },
          { type: T.Integer, name: 'daily', description: 'Images per day (0 blocks)', required: true, min_value: 0, max_value: 100000 },
        ],
      },
      {
        type: T.Subcommand,
        name: 'quota-user-clear',
        description: "Remove a member's override",
        options: [{ type: T.User, name: 'user', description: 'Member', required: true }],
      },
      {
        type: T.Subcommand,
        name: 'nsfw',
        description: 'NSFW policy',
        options: [
          {
            type: T.String,
            name: 'mode',
            description: 'strict: never; nsfw-channels: only in age-restricted channels',
            required: true,
            choices: NSFW_MODES.map((m) => ({ name: m, value: m })),
          },
        ],
      },
      {
        type: T.Subcommand,
        name: 'banned-words',
        description: 'Words refused in prompts',
        options: [
          {
            type: T.String,
            name: 'action',
            description: 'add, remove or list',
            required: true,
            choices: [
              { name: 'add', value: 'add' },
              { name: 'remove', value: 'remove' },
              { name: 'list', value: 'list' },
            ],
          },
          { type: T.String, name: 'words', description: 'Comma-separated words', max_length: 1000 },
        ],
      },
      {
        type: T.Subcommand,
        name: 'budget',
        description: 'Monthly cap on paid-provider spend (0 = local GPU only)',
        options: [
          {
            type: T.Number,
            name: 'monthly-usd',
            description: 'US dollars per calendar month',
            required: true,
            min_value: 0,
            max_value: 100000,
          },
        ],
      },
      {
        type: T.Subcommand,
        name: 'gpu-price',
        description: "What an hour on this server's own linked GPU boxes is worth (booked, never in the budget)",
        options: [
          { type: T.Number, name: 'usd-per-hour', description: 'US dollars per GPU-hour', required: true, min_value: 0, max_value: 1000 },
        ],
      },
      {
        type: T.Subcommand,
        name: 'log-channel',
        description: 'Where budget alerts and moderation notices go',
        options: [
          { type: T.Channel, name: 'channel', description: 'Text channel', required: true, channel_types: [ChannelType.GuildText] },
        ],
      },
      {
        type: T.Subcommand,
        name: 'stats',
        description: 'Jobs, images, failures, cost by backend and top users',
        options: [{ type: T.Integer, name: 'days', description: 'How many days back (default 7)', min_value: 1, max_value: 365 }],
      },
      { type: T.Subcommand, name: 'backends', description: "Each backend's health, circuit state, latency and price" },
      {
        type: T.SubcommandGroup,
        name: 'gpu',
        description: "This server's own GPU boxes",
        options: [
          { type: T.Subcommand, name: 'link', description: 'Link a GPU box: a one-time token and the command to start its worker' },
          { type: T.Subcommand, name: 'status', description: 'Linked boxes: online, busy, model, jobs today, last error' },
          { type: T.Subcommand, name: 'unlink', description: "Revoke a box's access at once", options: [linkOption] },
          { type: T.Subcommand, name: 'rotate', description: "Revoke a box's access and issue a new join token", options: [linkOption] },
        ],
      },
    ],
  },
  defer: 'ephemeral',
  async execute(ctx, interaction) {
    // Discord's default_member_permissions can be overridden per server; this check cannot.
    requireModerator(interaction, ctx.config.MODERATOR_ROLE_IDS);
    const guildId = interaction.guildId!;
    const group = interaction.options.getSubcommandGroup(false);
    const sub = group ? `${group} ${interaction.options.getSubcommand(true)}` : interaction.options.getSubcommand(true);
    const handler = HANDLERS[sub];
    if (!handler) throw new Error(`no handler for /admin ${sub}`);
    const result = await handler(ctx, interaction, guildId);
    ctx.log.info({ sub }, 'admin command');
    await interaction.editReply({
      content: result.reply || undefined,
      embeds: result.embeds as never,
      files: result.files?.map((f) => ({ attachment: f.data, name: f.name })),
      allowedMentions: NO_MENTIONS,
    });
    if (result.notice) await ctx.notices.post(guildId, adminText.notice(interaction.user.id, result.notice));
  },
} satisfies Command;
