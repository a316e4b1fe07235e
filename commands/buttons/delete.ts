import { DiscordAPIError, Routes } from 'discord.js';
import { buttonText } from '../../core/messages.js';
import { isForgotten } from '../../core/ports.js';
import type { ButtonHandler } from '../command.js';
import { NO_MENTIONS } from '../replies.js';
import { loadAnyJob, requireOwnerOrModerator } from './job.js';

/** Delete: the requester or a moderator. A result split over several messages goes as a whole, whichever part was pressed. */
export const remove = {
  defer: 'ephemeral',
  async execute(ctx, interaction, id) {
    const job = await loadAnyJob(ctx, interaction, id);
    requireOwnerOrModerator(ctx, interaction, job);
    // A forgotten job no longer knows its other messages: the one pressed goes.
    const others = (isForgotten(job) ? [] : [job.resultMessageId, ...job.resultExtraIds]).filter(
      (m): m is string => !!m && m !== interaction.message.id,
    );
    await interaction.message.delete();
    for (const other of others) {
      await interaction.client.rest.delete(Routes.channelMessage(job.channelId, other)).catch((err: unknown) => {
        // Already deleted by hand: that part is gone either way.
        if (!(err instanceof DiscordAPIError && err.code === 10008)) throw err;
      });
    }
    await interaction.editReply({ content: buttonText.deleted, allowedMentions: NO_MENTIONS });
  },
} satisfies ButtonHandler<undefined>;
