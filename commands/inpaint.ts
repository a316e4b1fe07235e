import { ApplicationCommandOptionType } from 'discord.js';
import { LIMITS } from '../core/generation.js';
import { UserError } from '../core/errors.js';
import { GUILD_ONLY, type Command } from './command.js';

export const inpaint = {
  data: {
    name: 'inpaint',
    description: 'Repaint part of an image: white in the mask (or transparent pixels) is redrawn',
    ...GUILD_ONLY,
    options: [
      { type: ApplicationCommandOptionType.Attachment, name: 'image', description: 'The image to edit', required: true },
      { type: ApplicationCommandOptionType.String, name: 'prompt', description: 'What to paint in the area', required: true, max_length: LIMITS.promptMax },
      { type: ApplicationCommandOptionType.Attachment, name: 'mask', description: 'White where to repaint (optional if the image has transparency)' },
      { type: ApplicationCommandOptionType.String, name: 'negative', description: 'What to avoid', max_length: LIMITS.negativeMax },
      { type: ApplicationCommandOptionType.Number, name: 'strength', description: 'How much the area may change (0.05-1)', min_value: 0.05, max_value: 1 },
      { type: ApplicationCommandOptionType.Integer, name: 'seed', description: 'Seed for reproducible results', min_value: 0, max_value: LIMITS.seedMax },
      { type: ApplicationCommandOptionType.Integer, name: 'count', description: 'Number of images (1-4)', min_value: 1, max_value: LIMITS.countMax },
    ],
  },
  defer: 'public',
  async execute() {
    throw new UserError('invalid_option', '`/inpaint` is not available on this bot yet.');
  },
} satisfies Command;
