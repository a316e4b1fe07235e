import { ApplicationCommandOptionType, type ChatInputCommandInteraction } from 'discord.js';
import { UserError } from '../core/errors.js';
import { type GenerationRequest, LIMITS, parseInpaintOptions } from '../core/generation.js';
import { declaredMaskMismatch } from '../core/inpaint-mask.js';
import { inpaintText } from '../core/messages.js';
import { type Command, GUILD_ONLY } from './command.js';
import type { Admitted, CommandContext } from './context.js';

/** The size an /inpaint is admitted with until its image is read (the quota counts images, not pixels). */
const PROVISIONAL_SIZE = 1024;

type Prepared = { base: ReturnType<typeof parseInpaintOptions>; imageUrl: string; maskUrl: string | null };

function readOptions(i: ChatInputCommandInteraction): Prepared {
  const image = i.options.getAttachment('image', true);
  const mask = i.options.getAttachment('mask');
  const base = parseInpaintOptions({
    prompt: i.options.getString('prompt', true),
    negative: i.options.getString('negative') ?? undefined,
    strength: i.options.getNumber('strength') ?? undefined,
    seed: i.options.getInteger('seed') ?? undefined,
    count: i.options.getInteger('count') ?? undefined,
  });
  return { base, imageUrl: image.url, maskUrl: mask?.url ?? null };
}

/**
 * Policy, quota and the in-flight limit first, with fresh input keys and a provisional size in the
 * request; only an admitted job has its attachments read (as hostile input: origin, size, format
 * and pixel checks before decoding), prepared at SDXL's size and parked under those keys. A refusal
 * downloads nothing; an attachment refused after admission refunds the job.
 */
async function admitInpaint(ctx: CommandContext, interaction: ChatInputCommandInteraction, p: Prepared): Promise<Admitted> {
  const inputKeys = ctx.inputs.keys();
  const request: GenerationRequest = { ...p.base, width: PROVISIONAL_SIZE, height: PROVISIONAL_SIZE, inputKeys };
  return ctx.generation.admit(interaction, request, undefined, async (admitted) => {
    const { width, height } = await ctx.inputs.inpaint(p.imageUrl, p.maskUrl, inputKeys);
    return { ...admitted, width, height };
  });
}

export const inpaint = {
  data: {
    name: 'inpaint',
    description: 'Repaint part of an image: white in the mask (or transparent pixels) is redrawn',
    ...GUILD_ONLY,
    options: [
      { type: ApplicationCommandOptionType.Attachment, name: 'image', description: 'The image to edit', required: true },
      {
        type: ApplicationCommandOptionType.String,
        name: 'prompt',
        description: 'What to paint in the area',
        required: true,
        max_length: LIMITS.promptMax,
      },
      {
        type: ApplicationCommandOptionType.Attachment,
        name: 'mask',
        description: 'White where to repaint (optional if the image has transparency)',
      },
      { type: ApplicationCommandOptionType.String, name: 'negative', description: 'What to avoid', max_length: LIMITS.negativeMax },
      {
        type: ApplicationCommandOptionType.Number,
        name: 'strength',
        description: `How much the area may change (${LIMITS.strengthMin}-${LIMITS.strengthMax})`,
        min_value: LIMITS.strengthMin,
        max_value: LIMITS.strengthMax,
      },
      {
        type: ApplicationCommandOptionType.Integer,
        name: 'seed',
        description: 'Seed for reproducible results',
        min_value: 0,
        max_value: LIMITS.seedMax,
      },
      {
        type: ApplicationCommandOptionType.Integer,
        name: 'count',
        description: 'Number of images (1-4)',
        min_value: 1,
        max_value: LIMITS.countMax,
      },
    ],
  },
  defer: 'public',
  prepare: (interaction, ctx) => {
    const image = interaction.options.getAttachment('image');
    if (!image) throw new UserError('attachment_rejected', inpaintText.needImage);
    // What Discord declares already refuses most bad uploads, privately and before any job exists.
    const mask = interaction.options.getAttachment('mask');
    for (const a of [image, mask]) if (a) ctx.inputs.precheck(a);
    const mismatch = mask ? declaredMaskMismatch(image, mask) : null;
    if (mismatch) throw new UserError('attachment_rejected', mismatch);
    return readOptions(interaction);
  },
  admit: (ctx, interaction, prepared) => admitInpaint(ctx, interaction, prepared),
  beforeAcknowledged: true,
  answersWithMessage: true,
  execute: (ctx, _interaction, _prepared, admitted, acknowledged, answer) =>
    ctx.generation.enqueue(admitted, ctx.log, acknowledged, answer),
} satisfies Command<Prepared, Admitted>;
