import { ApplicationCommandOptionType, type ChatInputCommandInteraction } from 'discord.js';
import { UserError } from '../core/errors.js';
import { type GenerationRequest, LIMITS, parseInpaintOptions } from '../core/generation.js';
import { inpaintText } from '../core/messages.js';
import { type Command, GUILD_ONLY } from './command.js';
import type { Admitted, CommandContext } from './context.js';

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
 * Reads the attachments as hostile input (origin, size, format and pixel checks before decoding),
 * prepares image and mask at SDXL's size and parks them in Redis for the worker; only then are
 * quota and policy checked, so a refused attachment changes nothing.
 */
async function admitInpaint(ctx: CommandContext, interaction: ChatInputCommandInteraction, p: Prepared): Promise<Admitted> {
  const { inputKeys, width, height } = await ctx.inputs.inpaint(p.imageUrl, p.maskUrl);
  const request: GenerationRequest = { ...p.base, width, height, inputKeys };
  return ctx.generation.admit(interaction, request);
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
  prepare: (interaction) => {
    if (!interaction.options.getAttachment('image')) throw new UserError('attachment_rejected', inpaintText.needImage);
    return readOptions(interaction);
  },
  admit: (ctx, interaction, prepared) => admitInpaint(ctx, interaction, prepared),
  execute: (ctx, _interaction, _prepared, admitted) => ctx.generation.enqueue(admitted, ctx.log),
} satisfies Command<Prepared, Admitted>;
