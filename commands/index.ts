import type { RESTPostAPIChatInputApplicationCommandsJSONBody } from 'discord.js';
import type { Command } from './command.js';
import { imagine } from './imagine.js';
import { inpaint } from './inpaint.js';
import { quota } from './quota.js';
import { admin } from './admin/index.js';

/** Every slash command, in one typed list: registration and the router both read it. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const COMMANDS: readonly Command<any, any>[] = [imagine, inpaint, quota, admin];

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function findCommand(name: string): Command<any, any> | undefined {
  return COMMANDS.find((c) => c.data.name === name);
}

/** The body of the bulk-overwrite PUT that registers the commands. */
export function registrationPayload(): RESTPostAPIChatInputApplicationCommandsJSONBody[] {
  return COMMANDS.map((c) => c.data);
}
