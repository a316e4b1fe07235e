/**
 * Builders for Discord API objects (users, channels, guilds, READY, applications, commands).
 * @module
 */
import { DEFAULTS, PERMS, shardForGuild, snowflake } from './ids.js';
import type { FakeState } from './state.js';
import type { FakeChannel, FakeGuild, FakeUser } from './types.js';

const JOINED_AT = '2024-01-01T00:00:00.000Z';

/** API user object. */
export function userObject(u: FakeUser): Record<string, unknown> {
  return {
    id: u.id,
    username: u.username,
    discriminator: '0',
    global_name: u.globalName ?? null,
    avatar: u.avatar ?? null,
    bot: u.bot ?? false,
    flags: 0,
    public_flags: 0,
  };
}

/** API guild member object (`permissions` only appears in interaction payloads). */
export function memberObject(u: FakeUser, roles: string[] = [], permissions?: string): Record<string, unknown> {
  return {
    user: userObject(u),
    roles,
    ...(permissions === undefined ? {} : { permissions }),
    joined_at: JOINED_AT,
    premium_since: null,
    nick: null,
    avatar: null,
    deaf: false,
    mute: false,
    flags: 0,
    pending: false,
    communication_disabled_until: null,
  };
}

/** API guild channel object. */
export function channelObject(guild: FakeGuild, channel: FakeChannel): Record<string, unknown> {
  return {
    id: channel.id,
    type: channel.type ?? 0,
    guild_id: guild.id,
    name: channel.name,
    position: guild.channels.indexOf(channel),
    parent_id: channel.parentId ?? null,
    nsfw: channel.nsfw ?? false,
    topic: channel.topic ?? null,
    permission_overwrites: [],
    rate_limit_per_user: 0,
    last_message_id: null,
    flags: 0,
  };
}

/** Roles of a guild, `@everyone` (id = guild id) first. */
function roleObjects(guild: FakeGuild): Record<string, unknown>[] {
  const roles = [...(guild.roles ?? [])];
  if (!roles.some((r) => r.id === guild.id)) {
    roles.unshift({ id: guild.id, name: '@everyone', permissions: PERMS.everyone, position: 0 });
  }
  return roles.map((r, i) => ({
    id: r.id,
    name: r.name,
    color: r.color ?? 0,
    colors: { primary_color: r.color ?? 0, secondary_color: null, tertiary_color: null },
    hoist: false,
    icon: null,
    unicode_emoji: null,
    position: r.position ?? i,
    permissions: r.permissions,
    managed: r.managed ?? false,
    mentionable: false,
    flags: 0,
  }));
}

/** GUILD_CREATE `d` for an available guild (shape of reference §5). */
export function guildCreate(state: FakeState, guild: FakeGuild): Record<string, unknown> {
  return {
    id: guild.id,
    name: guild.name,
    icon: null,
    splash: null,
    discovery_splash: null,
    banner: null,
    description: null,
    owner_id: guild.ownerId ?? DEFAULTS.ownerId,
    features: [],
    unavailable: false,
    joined_at: JOINED_AT,
    large: false,
    member_count: 2,
    roles: roleObjects(guild),
    channels: guild.channels.map((c) => {
      const { guild_id: _omit, ...rest } = channelObject(guild, c);
      return rest;
    }),
    members: [memberObject(state.botUser)],
    threads: [],
    presences: [],
    voice_states: [],
    emojis: [],
    stickers: [],
    stage_instances: [],
    guild_scheduled_events: [],
    soundboard_sounds: [],
    verification_level: 0,
    nsfw_level: 0,
    premium_tier: 0,
    premium_subscription_count: 0,
    preferred_locale: guild.preferredLocale ?? 'en-US',
    system_channel_id: null,
    rules_channel_id: null,
    public_updates_channel_id: null,
    safety_alerts_channel_id: null,
    afk_channel_id: null,
    afk_timeout: 300,
    mfa_level: 0,
    explicit_content_filter: 0,
    default_message_notifications: 0,
    system_channel_flags: 0,
    vanity_url_code: null,
    max_members: 500000,
    max_video_channel_users: 25,
    premium_progress_bar_enabled: false,
    application_id: null,
  };
}

/** Guilds owned by a shard. */
export function guildsForShard(state: FakeState, shard: [number, number]): FakeGuild[] {
  return state.opts.guilds.filter((g) => state.inGuild(g.id) && shardForGuild(g.id, shard[1]) === shard[0]);
}

/** READY `d` for one shard. */
export function readyPayload(state: FakeState, shard: [number, number], sessionId: string): Record<string, unknown> {
  return {
    v: 10,
    user: { ...userObject(state.botUser), verified: true, mfa_enabled: false, email: null },
    user_settings: {},
    guilds: guildsForShard(state, shard).map((g) => ({ id: g.id, unavailable: true })),
    private_channels: [],
    relationships: [],
    presences: [],
    guild_join_requests: [],
    geo_ordered_rtc_regions: ['local'],
    session_id: sessionId,
    session_type: 'normal',
    resume_gateway_url: state.url('/gateway').replace(/^http/, 'ws'),
    shard,
    application: { id: state.opts.appId, flags: 0 },
    _trace: ['["fake-discord",{"micros":0}]'],
  };
}

/** `GET /applications/@me` body. */
export function applicationObject(state: FakeState): Record<string, unknown> {
  return {
    id: state.opts.appId,
    name: state.opts.botUsername,
    icon: null,
    description: '',
    summary: '',
    type: null,
    bot_public: true,
    bot_require_code_grant: false,
    verify_key: '0'.repeat(64),
    flags: 0,
    hook: true,
    is_monetized: false,
    owner: userObject({ id: DEFAULTS.ownerId, username: 'owner' }),
    team: null,
    bot: userObject(state.botUser),
    approximate_guild_count: state.opts.guilds.length,
    install_params: { scopes: ['bot', 'applications.commands'], permissions: '0' },
    integration_types_config: { '0': {} },
    interactions_endpoint_url: null,
    redirect_uris: [],
    tags: [],
  };
}

/** Echoes a command as Discord stores it, keeping ids of commands with the same name. */
export function commandObject(
  state: FakeState,
  body: any,
  guildId: string | undefined,
  previous: any[] | undefined,
): Record<string, unknown> {
  const type = body.type ?? 1;
  const old = previous?.find((c) => c.name === body.name && c.type === type);
  return {
    id: old?.id ?? snowflake(),
    application_id: state.opts.appId,
    version: snowflake(),
    type,
    name: body.name,
    name_localizations: body.name_localizations ?? null,
    description: body.description ?? '',
    description_localizations: body.description_localizations ?? null,
    options: body.options ?? [],
    default_member_permissions: body.default_member_permissions ?? null,
    dm_permission: body.dm_permission ?? true,
    nsfw: body.nsfw ?? false,
    contexts: body.contexts ?? null,
    integration_types: body.integration_types ?? [0],
    ...(guildId ? { guild_id: guildId } : {}),
  };
}
