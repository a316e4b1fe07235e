import type { RESTPostAPIChatInputApplicationCommandsJSONBody } from 'discord.js';
import { admin } from './admin/index.js';
import type { Command } from './command.js';
import { imagine } from './imagine.js';
import { inpaint } from './inpaint.js';
import { quota } from './quota.js';

/** Every slash command, in one typed list: registration and the router both read it. */
// biome-ignore lint/suspicious/noExplicitAny: each command has its own prepared and admitted types; the router calls them as a pair
export const COMMANDS: readonly Command<any, any>[] = [imagine, inpaint, quota, admin];

// biome-ignore lint/suspicious/noExplicitAny: see COMMANDS
export function findCommand(name: string): Command<any, any> | undefined {
  return COMMANDS.find((c) => c.data.name === name);
}

/** The body of the bulk-overwrite PUT that registers the commands. */
export function registrationPayload(): RESTPostAPIChatInputApplicationCommandsJSONBody[] {
  return COMMANDS.map((c) => c.data);
}
