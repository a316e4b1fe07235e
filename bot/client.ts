import { Client, type ClientOptions, GatewayIntentBits, REST } from 'discord.js';

/**
 * Interaction callbacks and interaction-webhook edits are exempt from Discord's 50 req/s global
 * limit, but @discordjs/rest counts every request against it, which caps a busy bot at ~25 jobs/s.
 * The client's REST (interactions) therefore gets a high self-limit; bot-token traffic that the
 * global limit does cover goes through {@link createBotRest}.
 */
const INTERACTION_REQUESTS_PER_SECOND = 10_000;

/** discord.js Client with the Guilds intent only, its REST pointed at DISCORD_API_URL. */
export function createDiscordClient(apiUrl: string, extra: Partial<ClientOptions> = {}): Client {
  return new Client({
    intents: [GatewayIntentBits.Guilds],
    rest: { api: apiUrl, globalRequestsPerSecond: INTERACTION_REQUESTS_PER_SECOND },
    // Nothing the bot sends may ping anyone unless a call says so explicitly.
    allowedMentions: { parse: [] },
    ...extra,
  });
}

/**
 * REST for editing interaction replies and sending follow-ups (webhook routes, no bot token).
 * Kept apart from the client's REST so that, in a burst, queued and progress edits never wait in
 * front of the 3-second acknowledgements; Discord rate-limits these per webhook, not globally.
 */
export function createWebhookRest(apiUrl: string): REST {
  return new REST({ api: apiUrl, globalRequestsPerSecond: INTERACTION_REQUESTS_PER_SECOND });
}

/** REST for bot-token routes (channel messages, notices), held to Discord's 50 requests/s global limit. */
export function createBotRest(apiUrl: string, token: string): REST {
  return new REST({ api: apiUrl, globalRequestsPerSecond: 50 }).setToken(token);
}
