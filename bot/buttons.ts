import { PermissionFlagsBits, type ButtonInteraction } from 'discord.js';
import { decodeCustomId, type ButtonAction, type ButtonId } from '../core/custom-id.js';
import { UserError } from '../core/errors.js';
import { LIMITS } from '../core/generation.js';
import { requestCancel } from '../core/io/cancel.js';
import { buttonText } from '../core/messages.js';
import type { StoredJob } from '../core/ports.js';
import type { CommandContext } from './context.js';
import { NO_MENTIONS, quoteUserText } from './replies.js';
import { admitGeneration, enqueueGeneration, type Admitted } from './submit.js';

/** How each button is acknowledged: new results are public, everything else private. */
export const BUTTON_DEFER: Record<ButtonAction, 'public' | 'ephemeral'> = {
  cancel: 'ephemeral',
  reroll: 'public',
  vary: 'public',
  upscale: 'public',
  edit: 'ephemeral',
  info: 'ephemeral',
  delete: 'ephemeral',
};

/** Parses the custom_id before acknowledging; forged or stale ids are refused privately. */
export function parseButton(interaction: ButtonInteraction): ButtonId {
  const id = decodeCustomId(interaction.customId);
  if (!id) throw new UserError('stale_button', buttonText.stale);
  return id;
}

function isModerator(interaction: ButtonInteraction, roleIds: readonly string[]): boolean {
  const p = interaction.memberPermissions;
  if (p?.has(PermissionFlagsBits.ManageGuild) || p?.has(PermissionFlagsBits.Administrator)) return true;
  const roles = interaction.member?.roles;
  const ids = !roles ? [] : Array.isArray(roles) ? roles : [...roles.cache.keys()];
  return ids.some((r) => roleIds.includes(r));
}

async function loadJob(ctx: CommandContext, interaction: ButtonInteraction, id: ButtonId): Promise<StoredJob> {
  const job = await ctx.deps.store.get(id.jobId);
  // A job from another guild is as good as missing: ids must not leak across servers.
  if (!job || job.guildId !== interaction.guildId) throw new UserError('job_not_found', buttonText.notFound);
  return job;
}

function requireOwnerOrModerator(ctx: CommandContext, interaction: ButtonInteraction, job: StoredJob): void {
  if (job.userId === interaction.user.id || isModerator(interaction, ctx.deps.config.MODERATOR_ROLE_IDS)) return;
  throw new UserError('not_owner', buttonText.notOwner);
}

/** Buttons that start a new job are admitted (quota, policy) before acknowledging, like the slash commands. */
export async function admitButton(ctx: CommandContext, interaction: ButtonInteraction, id: ButtonId): Promise<Admitted | null> {
  if (id.action !== 'reroll') return null;
  const job = await loadJob(ctx, interaction, id);
  const seed = Math.floor(Math.random() * LIMITS.seedMax);
  return admitGeneration(ctx, interaction, { ...job.request, seed }, job.id);
}

/** Runs a result or progress button; the job is reloaded from Postgres and every check made again. */
export async function runButton(ctx: CommandContext, interaction: ButtonInteraction, id: ButtonId, admitted: Admitted | null): Promise<void> {
  if (admitted) {
    await enqueueGeneration(ctx, admitted);
    return;
  }
  const job = await loadJob(ctx, interaction, id);
  switch (id.action) {
    case 'cancel': {
      requireOwnerOrModerator(ctx, interaction, job);
      if (job.status !== 'queued' && job.status !== 'running') {
        await interaction.editReply({ content: buttonText.alreadyFinished, allowedMentions: NO_MENTIONS });
        return;
      }
      const removed = await ctx.deps.delivery.cancelQueued(job.id);
      if (!removed) await requestCancel(ctx.deps.redis, ctx.deps.config.QUEUE_PREFIX, job.id);
      await interaction.editReply({ content: removed ? buttonText.cancelled : buttonText.cancelling, allowedMentions: NO_MENTIONS });
      return;
    }
    case 'delete': {
      requireOwnerOrModerator(ctx, interaction, job);
      await interaction.message.delete();
      await interaction.editReply({ content: buttonText.deleted, allowedMentions: NO_MENTIONS });
      return;
    }
    case 'info': {
      const r = job.request;
      const lines = [
        `**Prompt:** ${quoteUserText(r.prompt, 1500)}`,
        r.negative ? `**Negative:** ${quoteUserText(r.negative, 800)}` : null,
        `**Size:** ${r.width}×${r.height} · **Images:** ${r.count} · **Seed:** ${job.result?.seed ?? r.seed}`,
        `**Steps:** ${r.steps} · **Guidance:** ${r.guidance} · **Preset:** ${r.preset}`,
        r.strength !== undefined ? `**Strength:** ${r.strength}` : null,
        `**Backend:** ${job.backend ?? '—'} · **Cost:** $${job.costUsd.toFixed(4)} · **Status:** ${job.status}`,
      ].filter(Boolean);
      await interaction.editReply({ content: lines.join('\n').slice(0, 2000), allowedMentions: NO_MENTIONS });
      return;
    }
    default:
      throw new UserError('stale_button', buttonText.unavailable);
  }
}

