import { escapeMarkdown, MessageFlags, type MessageMentionOptions, type RepliableInteraction } from 'discord.js';

/** Mentions are never parsed from anything the bot echoes. */
export const NO_MENTIONS: MessageMentionOptions = { parse: [] };

/** A user-typed value shown inside bot text: markdown escaped, mentions neutralised, length capped. */
export function quoteUserText(value: string, max = 1024): string {
  const cut = value.length > max ? `${value.slice(0, max - 1)}…` : value;
  return escapeMarkdown(cut);
}

/**
 * Tells the member something privately, whatever state the interaction is in.
 * A public deferred reply is replaced by an ephemeral follow-up so errors never show in the channel.
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
    // A public "thinking…" reply cannot become private: say it there, then clear it away.
    await interaction.editReply({ ...payload, components: [], embeds: [], files: [] });
    setTimeout(() => void interaction.deleteReply().catch(() => undefined), 15_000).unref();
    return;
  }
  await interaction.followUp({ ...payload, flags: MessageFlags.Ephemeral });
}
