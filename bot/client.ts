import { Client, type ClientOptions, GatewayIntentBits, Options, REST } from 'discord.js';
import { Agent } from 'undici';

/**
 * Interaction callbacks and interaction-webhook edits are exempt from Discord's 50 req/s global
 * limit, but @discordjs/rest counts every request against it, which caps a busy bot at ~25 jobs/s.
 * The client's REST (interactions) therefore gets a high self-limit; bot-token traffic that the
 * global limit does cover goes through {@link createBotRest}.
 */
const INTERACTION_REQUESTS_PER_SECOND = 10_000;

/**
 * Most connections each REST keeps open to Discord. undici's default has no bound: a burst of
 * interactions opened one connection per request in flight (a thousand TLS handshakes with Discord
 * for a thousand acknowledgements; in bench/overhead the bot's event loop, busy connecting, let
 * admissions time out on Postgres). Each REST has its own pool, so edits never queue in front of
 * acknowledgements.
 */
const MAX_CONNECTIONS = 128;
const connectionPool = () => new Agent({ connections: MAX_CONNECTIONS });

/**
 * What the bot keeps of Discord's objects: guilds, their channels (a channel's NSFW flag) and roles
 * (moderator roles). Everything else discord.js would keep grows with members and button presses
 * and is never read: the users and members behind interactions, the messages buttons sit on,
 * emojis, stickers, threads' members, scheduled events, invites, bans, presences, voice states.
 */
const CACHE_LIMITS = {
  ...Options.DefaultMakeCacheSettings,
  MessageManager: 0,
  ReactionManager: 0,
  ReactionUserManager: 0,
  GuildEmojiManager: 0,
  GuildStickerManager: 0,
  GuildScheduledEventManager: 0,
  GuildInviteManager: 0,
  GuildBanManager: 0,
  AutoModerationRuleManager: 0,
  StageInstanceManager: 0,
  ThreadMemberManager: 0,
  PresenceManager: 0,
  VoiceStateManager: 0,
  UserManager: { maxSize: 0, keepOverLimit: (u: { id: string; client: Client }) => u.id === u.client.user?.id },
  GuildMemberManager: { maxSize: 0, keepOverLimit: (m: { id: string; client: Client }) => m.id === m.client.user?.id },
} as const;

/** discord.js Client with the Guilds intent only, its REST pointed at DISCORD_API_URL. */
export function createDiscordClient(apiUrl: string, extra: Partial<ClientOptions> = {}): Client {
  return new Client({
    intents: [GatewayIntentBits.Guilds],
    makeCache: Options.cacheWithLimits(CACHE_LIMITS),
    rest: { api: apiUrl, globalRequestsPerSecond: INTERACTION_REQUESTS_PER_SECOND, agent: connectionPool() },
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
  return new REST({ api: apiUrl, globalRequestsPerSecond: INTERACTION_REQUESTS_PER_SECOND, agent: connectionPool() });
}

/** REST for bot-token routes (channel messages, notices), held to Discord's 50 requests/s global limit. */
export function createBotRest(apiUrl: string, token: string): REST {
  return new REST({ api: apiUrl, globalRequestsPerSecond: 50, agent: connectionPool() }).setToken(token);
}
