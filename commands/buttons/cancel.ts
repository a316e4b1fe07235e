import { buttonText } from '../../core/messages.js';
import type { ButtonHandler } from '../command.js';
import { NO_MENTIONS } from '../replies.js';
import { loadJob, requireOwnerOrModerator } from './job.js';

/** Cancel, while queued or running: the requester or a moderator. */
export const cancel = {
  defer: 'ephemeral',
  async execute(ctx, interaction, id) {
    const job = await loadJob(ctx, interaction, id);
    requireOwnerOrModerator(ctx, interaction, job);
    if (job.status !== 'queued' && job.status !== 'running') {
      await interaction.editReply({ content: buttonText.alreadyFinished, allowedMentions: NO_MENTIONS });
      return;
    }
    const outcome = await ctx.jobs.cancel(job.id);
    await interaction.editReply({
      content: outcome === 'cancelled' ? buttonText.cancelled : buttonText.cancelling,
      allowedMentions: NO_MENTIONS,
    });
  },
} satisfies ButtonHandler<undefined>;
