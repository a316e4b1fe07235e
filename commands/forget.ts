import { ButtonStyle, ComponentType } from 'discord.js';
import { encodeConfirmId } from '../core/custom-id.js';
import { UserError } from '../core/errors.js';
import { privacyText, text } from '../core/messages.js';
import { type ButtonHandler, type Command, GUILD_ONLY } from './command.js';
import { NO_MENTIONS } from './replies.js';

/** `/forget`: says what would be erased and asks for confirmation; nothing changes until the button is pressed. */
export const forget = {
  data: {
    name: 'forget',
    description: "Erase your prompts and settings from this server's records (asks first)",
    ...GUILD_ONLY,
  },
  defer: 'ephemeral',
  async execute(ctx, interaction) {
    const guildId = interaction.guildId;
    if (!guildId) throw new UserError('not_in_guild', text.notInGuild);
    const { finished, underWay } = await ctx.privacy.preview(guildId, interaction.user.id);
    if (finished === 0) {
      await interaction.editReply({ content: privacyText.nothingToForget(underWay), allowedMentions: NO_MENTIONS });
      return;
    }
    await interaction.editReply({
      content: privacyText.confirm(finished, underWay, ctx.config.RETENTION_DAYS),
      allowedMentions: NO_MENTIONS,
      components: [
        {
          type: ComponentType.ActionRow,
          components: [
            { type: ComponentType.Button, style: ButtonStyle.Danger, custom_id: encodeConfirmId('forget'), label: privacyText.button },
          ],
        },
      ],
    });
  },
} satisfies Command;

/** The confirmation: erases the data of whoever pressed it (the message is theirs alone), and says how much. */
export const forgetConfirmed = {
  defer: 'ephemeral',
  async execute(ctx, interaction) {
    const guildId = interaction.guildId;
    if (!guildId) throw new UserError('not_in_guild', text.notInGuild);
    const { forgotten, underWay } = await ctx.privacy.forget(guildId, interaction.user.id);
    ctx.log.info({ jobs: forgotten }, 'member data forgotten');
    await interaction.editReply({ content: privacyText.done(forgotten, underWay), allowedMentions: NO_MENTIONS });
  },
} satisfies ButtonHandler<undefined>;
