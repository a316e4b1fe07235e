import type { ButtonInteraction, ChatInputCommandInteraction, ModalSubmitInteraction } from 'discord.js';
import { UserError } from '../core/errors.js';
import type { GenerationRequest, JobPayload } from '../core/generation.js';
import { admitJob } from '../core/ledger.js';
import { checkPrompt, mayPostNsfw } from '../core/policy.js';
import { text } from '../core/messages.js';
import type { Actor } from '../core/ports.js';
import type { CommandContext } from './context.js';

/** Interactions that can start a generation: the slash commands and the result buttons. */
export type GenerationInteraction = ChatInputCommandInteraction | ButtonInteraction | ModalSubmitInteraction;

/** Plain ids of who asked where; the only Discord facts that cross into core/. */
export function actorOf(interaction: GenerationInteraction): Actor {
  if (!interaction.guildId || !interaction.channelId) throw new UserError('not_in_guild', text.notInGuild);
  const channel = interaction.channel;
  const nsfw = channel !== null && 'nsfw' in channel ? Boolean(channel.nsfw) : false;
  return { guildId: interaction.guildId, channelId: interaction.channelId, userId: interaction.user.id, channelNsfw: nsfw };
}

/**
 * Admits, records and enqueues a generation, then shows its place in the queue.
 * If the queue is unreachable the reservation is refunded before the member hears about it.
 */
export async function submitGeneration(
  ctx: CommandContext,
  interaction: GenerationInteraction,
  request: GenerationRequest,
  parentJobId?: string,
): Promise<void> {
  const { deps } = ctx;
  const actor = actorOf(interaction);
  const policy = await deps.settings.policy(actor.guildId).catch((err: unknown) => {
    throw new UserError('database_unavailable', text.databaseUnavailable, { cause: err });
  });
  const verdict = checkPrompt(`${request.prompt}\n${request.negative}`, {
    mode: policy.nsfwMode,
    channelNsfw: actor.channelNsfw,
    bannedWords: policy.bannedWords,
  });
  if (!verdict.ok) {
    ctx.log.info({ reason: verdict.reason }, 'prompt refused by policy');
    throw new UserError('prompt_blocked', verdict.reason === 'nsfw' ? text.promptNsfw : text.promptBanned);
  }
  const ref = { applicationId: interaction.applicationId, interactionId: interaction.id, token: interaction.token };
  const { jobId, budgetLeftUsd } = await admitJob(
    {
      store: deps.store,
      now: deps.now,
      deploymentDailyLimit: deps.config.DEFAULT_DAILY_IMAGES,
      deploymentMonthlyBudgetUsd: deps.config.DEFAULT_MONTHLY_BUDGET_USD,
      maxInFlight: deps.config.MAX_QUEUED_PER_USER,
    },
    actor,
    ref,
    request,
    parentJobId,
  );
  const log = ctx.log.child({ jobId });
  const payload: JobPayload = {
    v: 1,
    jobId,
    guildId: actor.guildId,
    request,
    paidAllowed: budgetLeftUsd > 0,
    budgetLeftUsd,
    nsfwAllowed: mayPostNsfw({ mode: policy.nsfwMode, channelNsfw: actor.channelNsfw }),
  };
  try {
    await deps.queue.add(request.kind, payload, { jobId });
  } catch (err) {
    log.warn({ err }, 'enqueue failed; refunding');
    const settled = await deps.store.settle(jobId, {
      status: 'failed',
      code: 'queue_unavailable',
      message: text.queueUnavailable,
      attempts: [],
    });
    if (settled) await deps.store.markDelivered(jobId, null);
    throw new UserError('queue_unavailable', text.queueUnavailable, { cause: err });
  }
  log.info({ kind: request.kind, count: request.count }, 'job queued');
  await deps.delivery.showQueued(jobId, actor.guildId, ref, request);
}
