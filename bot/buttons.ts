import { randomUUID } from 'node:crypto';
import {
  type ButtonInteraction,
  ComponentType,
  DiscordAPIError,
  type ModalSubmitInteraction,
  PermissionFlagsBits,
  Routes,
  TextInputStyle,
} from 'discord.js';
import { type ButtonAction, type ButtonId, decodeCustomId } from '../core/custom-id.js';
import { UserError } from '../core/errors.js';
import { type JobResult, LIMITS } from '../core/generation.js';
import { fetchAttachment } from '../core/io/attachments.js';
import { buttonText } from '../core/messages.js';
import type { StoredJob } from '../core/ports.js';
import {
  type EditFields,
  editDefaults,
  editedRequest,
  editFieldsSchema,
  resultActions,
  upscaleRequest,
  variationRequest,
} from '../core/result-actions.js';
import type { CommandContext } from './context.js';
import { type Admitted, admitGeneration, enqueueGeneration } from './generation.js';
import { NO_MENTIONS, quoteUserText } from './replies.js';

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

async function loadJob(ctx: CommandContext, interaction: ButtonInteraction | ModalSubmitInteraction, id: ButtonId): Promise<StoredJob> {
  const job = await ctx.deps.store.get(id.jobId);
  // A job from another guild is as good as missing: ids must not leak across servers.
  if (!job || job.guildId !== interaction.guildId) throw new UserError('job_not_found', buttonText.notFound);
  return job;
}

function requireOwnerOrModerator(ctx: CommandContext, interaction: ButtonInteraction, job: StoredJob): void {
  if (job.userId === interaction.user.id || isModerator(interaction, ctx.deps.config.MODERATOR_ROLE_IDS)) return;
  throw new UserError('not_owner', buttonText.notOwner);
}

const newSeed = () => Math.floor(Math.random() * LIMITS.seedMax);

function finished(job: StoredJob): JobResult {
  if (job.status !== 'succeeded' || !job.result) throw new UserError('action_unavailable', buttonText.unavailable);
  return job.result;
}

/**
 * The image a Vary or Upscale button belongs to, read back from the message it was pressed on
 * (Discord keeps it for as long as the message lives; our copy in Redis is gone after delivery).
 * Fetched like any attachment: allowed origins only, size and pixel caps before decoding.
 */
async function parkPostedImage(ctx: CommandContext, interaction: ButtonInteraction, index: number): Promise<string> {
  const { config, results } = ctx.deps;
  const prefix = `image-${index + 1}.`;
  const attachment = interaction.message.attachments.find((a) => a.name.startsWith(prefix));
  if (!attachment) throw new UserError('action_unavailable', buttonText.sourceGone);
  const image = await fetchAttachment(attachment.url, {
    allowedOrigins: config.DISCORD_ATTACHMENT_ORIGINS,
    maxBytes: config.ATTACHMENT_MAX_BYTES,
    maxPixels: config.ATTACHMENT_MAX_PIXELS,
  });
  const key = results.inputKey(randomUUID(), 'image');
  await results.put(key, image.bytes);
  return key;
}

/**
 * Buttons that start a new job are admitted (quota, policy) before acknowledging, like the slash
 * commands. Anyone may press them: the new job is the presser's, on the presser's quota.
 */
export async function admitButton(ctx: CommandContext, interaction: ButtonInteraction, id: ButtonId): Promise<Admitted | null> {
  if (id.action !== 'reroll' && id.action !== 'vary' && id.action !== 'upscale') return null;
  const job = await loadJob(ctx, interaction, id);
  if (id.action === 'reroll') {
    if (!resultActions(job.request, job.result ?? job.request).reroll) throw new UserError('action_unavailable', buttonText.unavailable);
    return admitGeneration(ctx, interaction, { ...job.request, seed: newSeed() }, job.id);
  }
  const result = finished(job);
  const source = { jobId: job.id, request: job.request, result, index: id.index ?? 0 };
  // Validate the request before fetching anything, so a refused button costs no download.
  const request = id.action === 'vary' ? variationRequest(source, newSeed()) : upscaleRequest(source);
  const image = await parkPostedImage(ctx, interaction, source.index);
  return admitGeneration(ctx, interaction, { ...request, inputKeys: { image } }, job.id);
}

/** The Edit button answers with a modal (it cannot be deferred first); the modal's custom_id is the button's. */
export async function openEditModal(ctx: CommandContext, interaction: ButtonInteraction, id: ButtonId): Promise<void> {
  const job = await loadJob(ctx, interaction, id);
  if (!resultActions(job.request, job.result ?? job.request).edit) throw new UserError('action_unavailable', buttonText.unavailable);
  const defaults = editDefaults(job.request);
  const M = buttonText.editModal;
  const input = (custom_id: string, label: string, value: string, max: number, required: boolean) => ({
    type: ComponentType.ActionRow as const,
    components: [
      {
        type: ComponentType.TextInput as const,
        custom_id,
        label,
        style: TextInputStyle.Paragraph,
        max_length: max,
        required,
        ...(value ? { value: value.slice(0, max) } : {}),
      },
    ],
  });
  await interaction.showModal({
    custom_id: interaction.customId,
    title: M.title,
    components: [
      input('prompt', M.prompt, defaults.prompt, LIMITS.promptMax, true),
      input('negative', M.negative, defaults.negative, LIMITS.negativeMax, false),
    ],
  });
}

/** Parses the Edit modal before acknowledging; forged ids and bad text are refused privately. */
export function parseEditModal(interaction: ModalSubmitInteraction): { id: ButtonId; fields: EditFields } {
  const id = decodeCustomId(interaction.customId);
  if (id?.action !== 'edit') throw new UserError('stale_button', buttonText.stale);
  const read = (name: string) => {
    try {
      return interaction.fields.getTextInputValue(name);
    } catch {
      return undefined;
    }
  };
  const parsed = editFieldsSchema.safeParse({ prompt: read('prompt') ?? '', negative: read('negative') });
  if (!parsed.success) throw new UserError('invalid_option', buttonText.stale);
  return { id, fields: parsed.data };
}

/** Admits the edited job: the original is reloaded, its prompt replaced, policy and quota checked again. */
export async function admitEdit(
  ctx: CommandContext,
  interaction: ModalSubmitInteraction,
  id: ButtonId,
  fields: EditFields,
): Promise<Admitted> {
  const job = await loadJob(ctx, interaction, id);
  return admitGeneration(ctx, interaction, editedRequest(job.request, fields, newSeed()), job.id);
}

/** Runs a result or progress button; the job is reloaded from Postgres and every check made again. */
export async function runButton(
  ctx: CommandContext,
  interaction: ButtonInteraction,
  id: ButtonId,
  admitted: Admitted | null,
): Promise<void> {
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
      const outcome = await ctx.deps.outbound.cancel(job.id);
      await interaction.editReply({
        content: outcome === 'cancelled' ? buttonText.cancelled : buttonText.cancelling,
        allowedMentions: NO_MENTIONS,
      });
      return;
    }
    case 'delete': {
      requireOwnerOrModerator(ctx, interaction, job);
      // A result split over several messages goes as a whole, whichever part was pressed.
      const others = [job.resultMessageId, ...job.resultExtraIds].filter((m): m is string => !!m && m !== interaction.message.id);
      await interaction.message.delete();
      for (const id of others) {
        await interaction.client.rest.delete(Routes.channelMessage(job.channelId, id)).catch((err: unknown) => {
          if (!(err instanceof DiscordAPIError && err.code === 10008)) throw err;
        });
      }
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
        r.source
          ? `**Made from:** image ${r.source.index + 1} of job \`${r.source.jobId}\` (${r.kind === 'upscale' ? 'upscale' : 'variation'})`
          : null,
        `**Backend:** ${job.backend ?? '—'} · **Cost:** $${job.costUsd.toFixed(4)} · **Status:** ${job.status}`,
      ].filter(Boolean);
      await interaction.editReply({ content: lines.join('\n').slice(0, 2000), allowedMentions: NO_MENTIONS });
      return;
    }
    default:
      throw new UserError('stale_button', buttonText.unavailable);
  }
}
