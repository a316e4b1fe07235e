import { escapeMarkdown, MessageFlags, type MessageMentionOptions, type RepliableInteraction } from 'discord.js';

/** Mentions are never parsed from anything the bot echoes. */
export const NO_MENTIONS: MessageMentionOptions = { parse: [] };

/** A user-typed value shown inside bot text: markdown escaped, mentions neutralised, length capped. */
export function quoteUserText(value: string, max = 1024): string {
  const cut = value.length > max ? `${value.slice(0, max - 1)}…` : value;
  // Masked links, headings and lists too (off in discord.js by default): a prompt could otherwise show a
  // disguised link or a banner in the bot's own message.
  return escapeMarkdown(cut, { maskedLink: true, heading: true, bulletedList: true, numberedList: true });
}

/**
 * Tells the member something privately, whatever state the interaction is in.
 * A public deferred reply is deleted and replaced by an ephemeral follow-up, so errors never show in the channel.
 */
export async function replyPrivately(interaction: RepliableInteraction, content: string, deferredEphemeral = false): Promise<void> {
  const payload = { content, allowedMentions: NO_MENTIONS };
  if (!interaction.deferred && !interaction.replied) {
    await interaction.reply({ ...payload, flags: MessageFlags.Ephemeral });
    return;
  }
  if (interaction.deferred && deferredEphemeral) {
    await interaction.editReply(payload);
    return;
  }
  if (interaction.deferred && !interaction.replied) {
    // A public "thinking…" reply cannot become private, and a follow-up sent while it stands only
    // fills it in, in public (Discord's create-follow-up notes). Deleted first, it leaves the
    // channel clean and the follow-up is a message of its own, ephemeral. If the delete fails we
    // say nothing rather than say it in public.
    await interaction.deleteReply();
  }
  await interaction.followUp({ ...payload, flags: MessageFlags.Ephemeral });
}
