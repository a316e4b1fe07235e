import {
  ApplicationIntegrationType,
  type AutocompleteInteraction,
  type ButtonInteraction,
  type ChatInputCommandInteraction,
  InteractionContextType,
  type ModalSubmitInteraction,
  type RESTPostAPIChatInputApplicationCommandsJSONBody,
} from 'discord.js';
import type { ButtonId } from '../core/custom-id.js';
import type { CommandContext, FirstAnswer } from './context.js';

/**
 * What every interaction goes through, in bot/router.ts: the input is parsed before anything is
 * acknowledged (a UserError there is answered privately), checks that need the database run
 * against the acknowledgement budget (a refusal inside it is answered privately too), the reply is
 * deferred, then the handler runs (beside the deferral, for a handler that asks to). `P` is the parsed input, `A` what admission returns.
 */
export interface Handler<I, P, A> {
  /** How the interaction is acknowledged: results are public, everything else private; `modal` answers with a form instead. */
  readonly defer: 'public' | 'ephemeral' | 'modal';
  /**
   * Checks that need the database (quota, policy), started before the acknowledgement. If they
   * refuse within the acknowledgement budget the member gets a private error instead of a public
   * "thinking…" message; if they are slow, the reply is deferred anyway and execute awaits them.
   */
  admit?(ctx: CommandContext, interaction: I, input: P): Promise<A>;
  /**
   * true: execute starts beside the acknowledgement instead of after it, and waits for
   * `acknowledged` itself before touching the reply (queueing a job needs no reply).
   */
  readonly beforeAcknowledged?: boolean;
  /**
   * true (with beforeAcknowledged): when admission passes inside the acknowledgement budget, nothing
   * is deferred; execute is handed `answer`, and the message it sends through it (the job's place)
   * is the interaction's first answer. One Discord request instead of a deferral and an edit.
   */
  readonly answersWithMessage?: boolean;
  /**
   * `acknowledged` settles when Discord has the first answer (already settled unless
   * beforeAcknowledged). `answer` is given only when nothing has been sent yet (answersWithMessage).
   */
  execute(ctx: CommandContext, interaction: I, input: P, admitted: A, acknowledged: Promise<void>, answer?: FirstAnswer): Promise<void>;
}

/** One slash command: its registration payload, its option parser and its handler. */
export interface Command<P = void, A = void> extends Handler<ChatInputCommandInteraction, P, A> {
  readonly data: RESTPostAPIChatInputApplicationCommandsJSONBody;
  /** Parses the options; pure and fast, it runs before the acknowledgement. */
  prepare?(interaction: ChatInputCommandInteraction, ctx: CommandContext): P;
  autocomplete?(ctx: CommandContext, interaction: AutocompleteInteraction): Promise<void>;
}

/** One button action; its input is the custom id the router decoded. */
export type ButtonHandler<A = unknown> = Handler<ButtonInteraction, ButtonId, A>;

/** One modal; its input is what `parse` read from the submitted form. */
export interface ModalHandler<P = unknown, A = unknown> extends Handler<ModalSubmitInteraction, P, A> {
  parse(interaction: ModalSubmitInteraction, id: ButtonId): P;
}

/** Commands run only in servers (context 0), installed to the server (integration type 0). */
export const GUILD_ONLY: { contexts: InteractionContextType[]; integration_types: ApplicationIntegrationType[] } = {
  contexts: [InteractionContextType.Guild],
  integration_types: [ApplicationIntegrationType.GuildInstall],
};
