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
    // Too late: the job's own outcome (charged or refunded) was recorded first and is what it shows.
    const content = { cancelled: buttonText.cancelled, cancelling: buttonText.cancelling, finished: buttonText.alreadyFinished }[outcome];
    await interaction.editReply({ content, allowedMentions: NO_MENTIONS });
  },
} satisfies ButtonHandler<undefined>;
