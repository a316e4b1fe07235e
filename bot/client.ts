import { Client, GatewayIntentBits, type ClientOptions } from 'discord.js';

/** discord.js Client with the Guilds intent only, its REST pointed at DISCORD_API_URL. */
export function createDiscordClient(apiUrl: string, extra: Partial<ClientOptions> = {}): Client {
  return new Client({
    intents: [GatewayIntentBits.Guilds],
    rest: { api: apiUrl },
    // Nothing the bot sends may ping anyone unless a call says so explicitly.
    allowedMentions: { parse: [] },
    ...extra,
  });
}
