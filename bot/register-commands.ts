import { type ApplicationCommandData, type Client, REST, Routes } from 'discord.js';
import type { Redis } from 'ioredis';
import { registrationPayload } from '../commands/index.js';
import { botConfigSchema, ConfigError, loadConfig } from '../core/config.js';
import { isEntryPoint } from '../core/io/entry.js';
import { loadEnvFile } from '../core/io/env-file.js';
import { createLogger } from '../core/io/logger.js';

/** Bulk-overwrites the slash commands: in one guild (instant) when DISCORD_DEV_GUILD_ID is set, else globally. */
export async function registerCommands(opts: { token: string; appId: string; apiUrl: string; guildId?: string }): Promise<number> {
  const rest = new REST({ api: opts.apiUrl }).setToken(opts.token);
  const route = opts.guildId ? Routes.applicationGuildCommands(opts.appId, opts.guildId) : Routes.applicationCommands(opts.appId);
  const result = (await rest.put(route, { body: registrationPayload() })) as unknown[];
  return result.length;
}

/**
 * Makes the commands Discord has match ours, at bot start: one GET, and the bulk overwrite only
 * when a command was added, removed or changed. A first start therefore ends with working slash
 * commands, an upgrade needs no separate step, and an ordinary restart writes nothing.
 * @param guildId - DISCORD_DEV_GUILD_ID: register in that guild (instant) instead of globally.
 */
export async function syncCommands(client: Client<true>, guildId?: string): Promise<'unchanged' | 'updated'> {
  const wanted = registrationPayload();
  const manager = client.application.commands;
  const current = await manager.fetch(guildId ? { guildId } : {});
  // discord.js compares the way Discord stores a command (defaults, option order, permissions).
  const same =
    current.size === wanted.length &&
    wanted.every((w) => current.find((c) => c.name === w.name)?.equals(w as ApplicationCommandData, true) === true);
  if (same) return 'unchanged';
  if (guildId) await manager.set(wanted, guildId);
  else await manager.set(wanted);
  return 'updated';
}

/** Where the bot remembers the guild it last registered guild-scoped commands in (Redis keeps it on disk). */
const devGuildKey = (prefix: string) => `${prefix}:commands:dev-guild`;

/**
 * Removes the guild-scoped copies a dev guild was given once the bot registers elsewhere: Discord
 * lists a guild's own commands beside the global ones, so without this that server shows each
 * command twice. Covers unsetting DISCORD_DEV_GUILD_ID and moving it to another guild.
 * @returns the guild cleared, if any.
 */
export async function clearFormerDevGuild(
  client: Client<true>,
  redis: Pick<Redis, 'get' | 'set' | 'del'>,
  prefix: string,
  guildId?: string,
): Promise<string | undefined> {
  const former = await redis.get(devGuildKey(prefix));
  if (former && former !== guildId) await client.application.commands.set([], former);
  if (guildId) {
    if (former !== guildId) await redis.set(devGuildKey(prefix), guildId);
  } else if (former) await redis.del(devGuildKey(prefix));
  return former && former !== guildId ? former : undefined;
}

async function main(): Promise<void> {
  const log = createLogger({ name: 'register-commands' });
  try {
    loadEnvFile();
    const config = loadConfig(botConfigSchema, process.env);
    const n = await registerCommands({
      token: config.DISCORD_TOKEN,
      appId: config.DISCORD_APP_ID,
      apiUrl: config.DISCORD_API_URL,
      guildId: config.DISCORD_DEV_GUILD_ID,
    });
    log.info({ commands: n, scope: config.DISCORD_DEV_GUILD_ID ? 'guild' : 'global' }, 'commands registered');
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const line of err.lines) process.stderr.write(`invalid configuration: ${line}\n`);
    } else {
      log.fatal({ err }, 'registration failed');
    }
    process.exitCode = 1;
  }
}

if (isEntryPoint(import.meta.url)) await main();
