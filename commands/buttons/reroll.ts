import { UserError } from '../../core/errors.js';
import { buttonText } from '../../core/messages.js';
import { resultActions } from '../../core/result-actions.js';
import type { ButtonHandler } from '../command.js';
import type { Admitted } from '../context.js';
import { loadJob, newSeed } from './job.js';

/** Reroll: the same request with a new seed, as a new job of the member who pressed it. */
export const reroll = {
  defer: 'public',
  async admit(ctx, interaction, id) {
    const job = await loadJob(ctx, interaction, id);
    if (!resultActions(job.request, job.result ?? job.request).reroll) throw new UserError('action_unavailable', buttonText.unavailable);
    return ctx.generation.admit(interaction, { ...job.request, seed: newSeed() }, job.id);
  },
  beforeAcknowledged: true,
  answersWithMessage: true,
  execute: (ctx, _interaction, _id, admitted, acknowledged, answer) => ctx.generation.enqueue(admitted, ctx.log, acknowledged, answer),
} satisfies ButtonHandler<Admitted>;
