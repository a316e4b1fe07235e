import {
  ApplicationIntegrationType,
  InteractionContextType,
  type AutocompleteInteraction,
  type ChatInputCommandInteraction,
  type RESTPostAPIChatInputApplicationCommandsJSONBody,
} from 'discord.js';
import type { CommandContext } from '../bot/context.js';

/**
 * One slash command: its registration payload and its handler.
 * `prepare` runs before the acknowledgement and must be pure and fast (option parsing);
 * a UserError there is answered ephemerally without deferring.
 */
export interface Command<P = void> {
  readonly data: RESTPostAPIChatInputApplicationCommandsJSONBody;
  /** How the reply is acknowledged: results are public, settings and quotas private. */
  readonly defer: 'public' | 'ephemeral';
  prepare?(interaction: ChatInputCommandInteraction): P;
  execute(ctx: CommandContext, interaction: ChatInputCommandInteraction, prepared: P): Promise<void>;
  autocomplete?(ctx: CommandContext, interaction: AutocompleteInteraction): Promise<void>;
}

/** Commands run only in servers (context 0), installed to the server (integration type 0). */
export const GUILD_ONLY: { contexts: InteractionContextType[]; integration_types: ApplicationIntegrationType[] } = {
  contexts: [InteractionContextType.Guild],
  integration_types: [ApplicationIntegrationType.GuildInstall],
};
