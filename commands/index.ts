import type { RESTPostAPIChatInputApplicationCommandsJSONBody } from 'discord.js';
import type { ButtonAction, ConfirmAction } from '../core/custom-id.js';
import { admin } from './admin/index.js';
import { cancel } from './buttons/cancel.js';
import { remove } from './buttons/delete.js';
import { edit, editSubmitted } from './buttons/edit.js';
import { upscale, vary } from './buttons/from-image.js';
import { info } from './buttons/info.js';
import { reroll } from './buttons/reroll.js';
import type { ButtonHandler, Command, ModalHandler } from './command.js';
import { forget, forgetConfirmed } from './forget.js';
import { imagine } from './imagine.js';
import { inpaint } from './inpaint.js';
import { quota } from './quota.js';

/*
 * Every handler, in typed static tables the router and registration read. A slash command is
 * found by name; a button by the action of its custom id, and a button action without a handler
 * (or a handler for no action) does not compile; the Edit form by the custom id it was opened with.
 */

// biome-ignore lint/suspicious/noExplicitAny: each command has its own parsed and admitted types; the router runs them as a pair
const COMMANDS: readonly Command<any, any>[] = [imagine, inpaint, quota, forget, admin];

export const BUTTONS: { readonly [A in ButtonAction]: ButtonHandler } = {
  cancel,
  reroll,
  vary,
  upscale,
  edit,
  info,
  delete: remove,
};

/** Confirmation buttons that belong to no job, by their action. */
export const CONFIRMATIONS: { readonly [A in ConfirmAction]: ButtonHandler } = { forget: forgetConfirmed };

/** Forms, by the action of the button that opened them. */
export const MODALS: { readonly [A in ButtonAction]?: ModalHandler } = { edit: editSubmitted };

// biome-ignore lint/suspicious/noExplicitAny: see COMMANDS
export function findCommand(name: string): Command<any, any> | undefined {
  return COMMANDS.find((c) => c.data.name === name);
}

/** The body of the bulk-overwrite PUT that registers the commands. */
export function registrationPayload(): RESTPostAPIChatInputApplicationCommandsJSONBody[] {
  return COMMANDS.map((c) => c.data);
}
