import { ApplicationCommandOptionType, type ChatInputCommandInteraction } from 'discord.js';
import { ASPECTS, type GenerationRequest, LIMITS, parseImagineOptions } from '../core/generation.js';
import { type Command, GUILD_ONLY } from './command.js';
import type { Admitted } from './context.js';

function readOptions(i: ChatInputCommandInteraction) {
  const o = i.options;
  return {
    prompt: o.getString('prompt', true),
    negative: o.getString('negative') ?? undefined,
    aspect: o.getString('aspect') ?? undefined,
    count: o.getInteger('count') ?? undefined,
    seed: o.getInteger('seed') ?? undefined,
    steps: o.getInteger('steps') ?? undefined,
    guidance: o.getNumber('guidance') ?? undefined,
    preset: o.getString('preset') ?? undefined,
  };
}

export const imagine = {
  data: {
    name: 'imagine',
    description: 'Generate images from a text prompt',
    ...GUILD_ONLY,
    options: [
      {
        type: ApplicationCommandOptionType.String,
        name: 'prompt',
        description: 'What to draw',
        required: true,
        max_length: LIMITS.promptMax,
      },
      { type: ApplicationCommandOptionType.String, name: 'negative', description: 'What to avoid', max_length: LIMITS.negativeMax },
      {
        type: ApplicationCommandOptionType.String,
        name: 'aspect',
        description: 'Aspect ratio (default 1:1)',
        choices: ASPECTS.map((a) => ({ name: a, value: a })),
      },
      {
        type: ApplicationCommandOptionType.Integer,
        name: 'count',
        description: 'Number of images (1-4)',
        min_value: 1,
        max_value: LIMITS.countMax,
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
        name: 'steps',
        description: 'Sampling steps',
        min_value: LIMITS.stepsMin,
        max_value: LIMITS.stepsMax,
      },
      {
        type: ApplicationCommandOptionType.Number,
        name: 'guidance',
        description: 'Prompt guidance (CFG scale)',
        min_value: LIMITS.guidanceMin,
        max_value: LIMITS.guidanceMax,
      },
      { type: ApplicationCommandOptionType.String, name: 'preset', description: 'Style preset', autocomplete: true },
    ],
  },
  defer: 'public',
  prepare: (interaction, ctx) => parseImagineOptions(readOptions(interaction), undefined, ctx.presets.catalog),
  admit: (ctx, interaction, request) => ctx.generation.admit(interaction, request),
  beforeAcknowledged: true,
  answersWithMessage: true,
  execute: (ctx, _interaction, _request, admitted, acknowledged, answer) => ctx.generation.enqueue(admitted, ctx.log, acknowledged, answer),
  async autocomplete(ctx, interaction) {
    await interaction.respond(await ctx.presets.choices(String(interaction.options.getFocused())));
  },
} satisfies Command<GenerationRequest, Admitted>;
