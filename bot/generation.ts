import type { ButtonInteraction, ChatInputCommandInteraction, ModalSubmitInteraction } from 'discord.js';
import { UserError } from '../core/errors.js';
import { type GenerationRequest, toJobPayload } from '../core/generation.js';
import { enqueueJob } from '../core/io/queue.js';
import { admitJob } from '../core/ledger.js';
import { text } from '../core/messages.js';
import { checkRequestText, mayPostNsfw } from '../core/policy.js';
import type { Actor, InteractionRef } from '../core/ports.js';
import { queuePriority } from '../core/quota.js';
import { NOT_ENQUEUED } from '../core/settle.js';
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

export interface Admitted {
  jobId: string;
  actor: Actor;
  ref: InteractionRef;
  request: GenerationRequest;
  budgetLeftUsd: number;
  nsfwAllowed: boolean;
  /** Images this member had today before this job; fewer means an earlier turn in the queue. */
  usedBefore: number;
}

/** Policy check, then quota reservation and job record in one statement. Throws UserError when refused. */
export async function admitGeneration(
  ctx: CommandContext,
  interaction: GenerationInteraction,
  request: GenerationRequest,
  parentJobId?: string,
): Promise<Admitted> {
  const { deps } = ctx;
  const actor = actorOf(interaction);
  const policy = await deps.settings.policy(actor.guildId).catch((err: unknown) => {
    throw new UserError('database_unavailable', text.databaseUnavailable, { cause: err });
  });
  const verdict = checkRequestText(request, { mode: policy.nsfwMode, channelNsfw: actor.channelNsfw, bannedWords: policy.bannedWords });
  if (!verdict.ok) {
    ctx.log.info({ reason: verdict.reason }, 'prompt refused by policy');
    throw new UserError('prompt_blocked', verdict.reason === 'nsfw' ? text.promptNsfw : text.promptBanned);
  }
  const ref = {
    applicationId: interaction.applicationId,
    interactionId: interaction.id,
    token: interaction.token,
    uploadLimitBytes: interaction.attachmentSizeLimit,
  };
  const { jobId, budgetLeftUsd, usedToday } = await admitJob(
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
  deps.outbound.lifecycle.begin(jobId, actor.guildId, actor.channelId, ref, request);
  return {
    jobId,
    actor,
    ref,
    request,
    budgetLeftUsd,
    nsfwAllowed: mayPostNsfw({ mode: policy.nsfwMode, channelNsfw: actor.channelNsfw }),
    usedBefore: Math.max(0, usedToday - request.count),
  };
}

/**
 * Enqueues an admitted job and shows its place in the queue. If the queue is unreachable the
 * reservation is refunded before the member hears about it.
 */
export async function enqueueGeneration(ctx: CommandContext, a: Admitted): Promise<void> {
  const { deps } = ctx;
  const log = ctx.log.child({ jobId: a.jobId });
  const payload = toJobPayload({ jobId: a.jobId, guildId: a.actor.guildId, request: a.request }, a);
  try {
    await enqueueJob(deps.queue, payload, queuePriority(a.usedBefore));
  } catch (err) {
    log.warn({ err }, 'enqueue failed; refunding');
    deps.outbound.lifecycle.forget(a.jobId);
    const settled = await deps.store.settle(a.jobId, NOT_ENQUEUED);
    if (settled) await deps.store.markDelivered(a.jobId, null);
    throw new UserError('queue_unavailable', text.queueUnavailable, { cause: err });
  }
  log.info({ kind: a.request.kind, count: a.request.count }, 'job queued');
  await deps.outbound.lifecycle.showQueued(a.jobId);
}
