import { type ChatInputCommandInteraction, PermissionFlagsBits } from 'discord.js';
import { UserError } from '../core/errors.js';
import { text } from '../core/messages.js';

/** The member's role ids, whether discord.js resolved the member or handed us raw API data. */
function roleIds(interaction: ChatInputCommandInteraction): string[] {
  const roles = interaction.member?.roles;
  if (!roles) return [];
  return Array.isArray(roles) ? roles : [...roles.cache.keys()];
}

/**
 * The bot's own moderator check, run on every `/admin` call whatever Discord's command
 * permissions say: Manage Guild, Administrator, or one of the configured moderator roles.
 */
export function requireModerator(interaction: ChatInputCommandInteraction, moderatorRoleIds: readonly string[]): void {
  if (!interaction.inGuild()) throw new UserError('not_in_guild', text.notInGuild);
  const perms = interaction.memberPermissions;
  if (perms?.has(PermissionFlagsBits.ManageGuild) || perms?.has(PermissionFlagsBits.Administrator)) return;
  if (roleIds(interaction).some((r) => moderatorRoleIds.includes(r))) return;
  throw new UserError('not_moderator', text.notModerator);
}
