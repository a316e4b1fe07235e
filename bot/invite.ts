import { OAuth2Scopes, PermissionFlagsBits } from 'discord.js';

/**
 * Exactly what the bot does with its own token, and the permission each needs. Interaction replies,
 * their edits and follow-ups go through the interaction's webhook and need none of these.
 */
const BOT_PERMISSIONS = {
  /** See the channels it is used in and the log channel. */
  ViewChannel: PermissionFlagsBits.ViewChannel,
  /** Post results after 14 minutes (the interaction token is about to expire) and notices in the log channel. */
  SendMessages: PermissionFlagsBits.SendMessages,
  /** The same when /imagine was used in a thread. */
  SendMessagesInThreads: PermissionFlagsBits.SendMessagesInThreads,
  /** Those posts carry the result embed and the images. */
  EmbedLinks: PermissionFlagsBits.EmbedLinks,
  AttachFiles: PermissionFlagsBits.AttachFiles,
  /** A late result is posted as a reply (message_reference) to the member's original message. */
  ReadMessageHistory: PermissionFlagsBits.ReadMessageHistory,
} as const;

/** The OAuth2 scopes: the bot user, and its slash commands. */
const BOT_SCOPES = [OAuth2Scopes.Bot, OAuth2Scopes.ApplicationsCommands] as const;

/** The permission integer of {@link BOT_PERMISSIONS}. */
function botPermissions(): bigint {
  return Object.values(BOT_PERMISSIONS).reduce((all, bit) => all | bit, 0n);
}

/** The link a server owner opens to add the bot to a server. */
export function inviteUrl(appId: string): string {
  const url = new URL('https://discord.com/oauth2/authorize');
  url.searchParams.set('client_id', appId);
  url.searchParams.set('scope', BOT_SCOPES.join(' '));
  url.searchParams.set('permissions', botPermissions().toString());
  return url.toString();
}
