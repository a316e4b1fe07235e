import { ComponentType, type ModalSubmitInteraction, TextInputStyle } from 'discord.js';
import type { ButtonId } from '../../core/custom-id.js';
import { UserError } from '../../core/errors.js';
import { LIMITS } from '../../core/generation.js';
import { buttonText, text } from '../../core/messages.js';
import { type EditFields, editDefaults, editedRequest, editFieldsSchema, resultActions } from '../../core/result-actions.js';
import type { ButtonHandler, ModalHandler } from '../command.js';
import type { Admitted } from '../context.js';
import { loadJob, newSeed } from './job.js';

/**
 * How long the form waits for the job: a modal must be Discord's first answer (nothing can be
 * deferred), within 3 s of the press; past this the member is told privately instead.
 */
const FORM_LOAD_MS = 2000;

/** Edit: answers with a form holding the member's own prompt (a modal must be the first answer, so nothing is deferred). */
export const edit = {
  defer: 'modal',
  async execute(ctx, interaction, id) {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new UserError('database_unavailable', text.databaseUnavailable)), FORM_LOAD_MS);
    });
    const job = await Promise.race([loadJob(ctx, interaction, id), late]).finally(() => clearTimeout(timer));
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
    // The modal's custom_id is the button's: its submission finds the job the same way.
    await interaction.showModal({
      custom_id: interaction.customId,
      title: M.title,
      components: [
        input('prompt', M.prompt, defaults.prompt, LIMITS.promptMax, true),
        input('negative', M.negative, defaults.negative, LIMITS.negativeMax, false),
      ],
    });
  },
} satisfies ButtonHandler<undefined>;

/** The Edit form submitted: the original job reloaded, its prompt replaced, policy and quota checked again, then a new public job. */
export const editSubmitted = {
  defer: 'public',
  parse(interaction: ModalSubmitInteraction, id: ButtonId): { id: ButtonId; fields: EditFields } {
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
  },
  async admit(ctx, interaction, { id, fields }) {
    const job = await loadJob(ctx, interaction, id);
    return ctx.generation.admit(
      interaction,
      editedRequest(job.request, fields, newSeed(), ctx.presets.catalog.find(job.request.preset)),
      job.id,
    );
  },
  beforeAcknowledged: true,
  answersWithMessage: true,
  execute: (ctx, _interaction, _input, admitted, acknowledged, answer) => ctx.generation.enqueue(admitted, ctx.log, acknowledged, answer),
} satisfies ModalHandler<{ id: ButtonId; fields: EditFields }, Admitted>;
