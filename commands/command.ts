import {
  ApplicationIntegrationType,
  type AutocompleteInteraction,
  type ChatInputCommandInteraction,
  InteractionContextType,
  type RESTPostAPIChatInputApplicationCommandsJSONBody,
} from 'discord.js';
import type { CommandContext } from '../bot/context.js';

/**
 * One slash command: its registration payload and its handler.
 * `prepare` runs before the acknowledgement and must be pure and fast (option parsing);
 * a UserError there is answered ephemerally without deferring.
 */
export interface Command<P = void, A = void> {
  readonly data: RESTPostAPIChatInputApplicationCommandsJSONBody;
  /** How the reply is acknowledged: results are public, settings and quotas private. */
  readonly defer: 'public' | 'ephemeral';
  prepare?(interaction: ChatInputCommandInteraction): P;
  /**
   * Checks that need the database (quota, policy), started before the acknowledgement. If they
   * refuse within the acknowledgement budget the member gets a private error instead of a public
   * "thinking…" message; if they are slow, the reply is deferred anyway and execute awaits them.
   */
  admit?(ctx: CommandContext, interaction: ChatInputCommandInteraction, prepared: P): Promise<A>;
  execute(ctx: CommandContext, interaction: ChatInputCommandInteraction, prepared: P, admitted: A): Promise<void>;
  autocomplete?(ctx: CommandContext, interaction: AutocompleteInteraction): Promise<void>;
}

/** Commands run only in servers (context 0), installed to the server (integration type 0). */
export const GUILD_ONLY: { contexts: InteractionContextType[]; integration_types: ApplicationIntegrationType[] } = {
  contexts: [InteractionContextType.Guild],
  integration_types: [ApplicationIntegrationType.GuildInstall],
};
