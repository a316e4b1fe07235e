import { type ButtonInteraction, type ChatInputCommandInteraction, PermissionFlagsBits } from 'discord.js';
import { UserError } from '../core/errors.js';
import { text } from '../core/messages.js';

type MemberInteraction = ChatInputCommandInteraction | ButtonInteraction;

/** The member's role ids, whether discord.js resolved the member or handed us raw API data. */
function roleIds(interaction: MemberInteraction): string[] {
  const roles = interaction.member?.roles;
  if (!roles) return [];
  return Array.isArray(roles) ? roles : [...roles.cache.keys()];
}

/** The bot's moderator rule: Manage Guild, Administrator, or one of the configured moderator roles. */
export function isModerator(interaction: MemberInteraction, moderatorRoleIds: readonly string[]): boolean {
  const perms = interaction.memberPermissions;
  if (perms?.has(PermissionFlagsBits.ManageGuild) || perms?.has(PermissionFlagsBits.Administrator)) return true;
  return roleIds(interaction).some((r) => moderatorRoleIds.includes(r));
}

/** Run on every `/admin` call whatever Discord's command permissions say. */
export function requireModerator(interaction: ChatInputCommandInteraction, moderatorRoleIds: readonly string[]): void {
  if (!interaction.inGuild()) throw new UserError('not_in_guild', text.notInGuild);
  if (!isModerator(interaction, moderatorRoleIds)) throw new UserError('not_moderator', text.notModerator);
}
