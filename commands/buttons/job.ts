import type { ButtonInteraction, ModalSubmitInteraction } from 'discord.js';
import type { ButtonId } from '../../core/custom-id.js';
import { UserError } from '../../core/errors.js';
import { type JobResult, LIMITS } from '../../core/generation.js';
import { buttonText } from '../../core/messages.js';
import { type ForgottenJob, isForgotten, type StoredJob } from '../../core/ports.js';
import type { CommandContext } from '../context.js';
import { isModerator } from '../guards.js';

/**
 * The job a button or modal belongs to, reloaded on every press, forgotten or not. A job of another
 * guild is as good as missing: ids must not leak across servers.
 */
export async function loadAnyJob(
  ctx: CommandContext,
  interaction: ButtonInteraction | ModalSubmitInteraction,
  id: ButtonId,
): Promise<StoredJob | ForgottenJob> {
  const job = await ctx.jobs.get(id.jobId);
  if (!job || job.guildId !== interaction.guildId) throw new UserError('job_not_found', buttonText.notFound);
  return job;
}

/** The job with its prompt and parameters; one whose data was erased (/forget, retention) has nothing left to start from. */
export async function loadJob(
  ctx: CommandContext,
  interaction: ButtonInteraction | ModalSubmitInteraction,
  id: ButtonId,
): Promise<StoredJob> {
  const job = await loadAnyJob(ctx, interaction, id);
  if (isForgotten(job)) throw new UserError('job_forgotten', buttonText.forgotten);
  return job;
}

export function requireOwnerOrModerator(ctx: CommandContext, interaction: ButtonInteraction, job: { userId: string }): void {
  if (job.userId === interaction.user.id || isModerator(interaction, ctx.config.MODERATOR_ROLE_IDS)) return;
  throw new UserError('not_owner', buttonText.notOwner);
}

/** The job's result, for actions that start from it; refused while it has none. */
export function finishedResult(job: StoredJob): JobResult {
  if (job.status !== 'succeeded' || !job.result) throw new UserError('action_unavailable', buttonText.unavailable);
  return job.result;
}

export const newSeed = (): number => Math.floor(Math.random() * LIMITS.seedMax);

/** The image a Vary or Upscale button belongs to: image `index` on the message it was pressed on. */
export function postedImageUrl(interaction: ButtonInteraction, index: number): string {
  const prefix = `image-${index + 1}.`;
  const attachment = interaction.message.attachments.find((a) => a.name.startsWith(prefix));
  if (!attachment) throw new UserError('action_unavailable', buttonText.sourceGone);
  return attachment.url;
}
