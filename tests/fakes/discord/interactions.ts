/**
 * INTERACTION_CREATE payload builders (reference §6) with every key discord.js requires,
 * and the records that collect what the bot answers.
 * @module
 */

import { DEFAULT_ATTACHMENT_LIMIT, DEFAULT_USER, interactionToken, PERMS, preciseNow, snowflake } from './ids.js';
import { toApiMessage } from './messages.js';
import { imageSize } from './multipart.js';
import { channelObject, memberObject, userObject } from './payloads.js';
import type { FakeState, InteractionRecord } from './state.js';
import type {
  APIOption,
  AutocompleteOptions,
  ButtonPressOptions,
  FakeCallback,
  FakeMessage,
  InteractionBaseOptions,
  ModalSubmitOptions,
  SlashCommandOptions,
} from './types.js';

/** A payload ready to dispatch plus its routing facts. */
export interface BuiltInteraction {
  payload: Record<string, any>;
  guildId?: string;
  channelId: string;
  sourceMessageId?: string;
}

const DM_CHANNEL_ID = '6000000000000000006';

function envelope(state: FakeState, type: number, opts: InteractionBaseOptions, source?: FakeMessage): BuiltInteraction {
  const user = opts.user ?? DEFAULT_USER;
  const appPermissions = opts.appPermissions ?? PERMS.member;
  const common = {
    id: snowflake(),
    application_id: state.opts.appId,
    type,
    token: '',
    version: 1,
    app_permissions: appPermissions,
    locale: opts.locale ?? 'en-US',
    entitlements: [],
    attachment_size_limit: opts.attachmentSizeLimit ?? DEFAULT_ATTACHMENT_LIMIT,
  };
  const dm = opts.guildId === null || (opts.guildId === undefined && source !== undefined && !source.guildId);
  if (dm) {
    const channelId = opts.channelId ?? source?.channelId ?? DM_CHANNEL_ID;
    const channel = { id: channelId, type: 1, last_message_id: null, flags: 0, recipients: [userObject(user)] };
    const payload = {
      ...common,
      channel,
      channel_id: channelId,
      user: userObject(user),
      authorizing_integration_owners: { '0': '0' },
      context: 1,
    };
    return { payload, channelId };
  }
  const guildId = opts.guildId ?? source?.guildId ?? state.opts.guilds[0]?.id;
  const guild = state.guild(guildId);
  if (!guild) throw new Error(`fake discord: unknown guild ${String(guildId)}`);
  const channelId = opts.channelId ?? source?.channelId ?? guild.channels[0]?.id;
  const channel = guild.channels.find((c) => c.id === channelId);
  if (!channel) throw new Error(`fake discord: channel ${String(channelId)} is not in guild ${guild.id}`);
  const payload = {
    ...common,
    guild_id: guild.id,
    guild: { id: guild.id, locale: guild.preferredLocale ?? 'en-US', features: [] },
    guild_locale: guild.preferredLocale ?? 'en-US',
    channel_id: channel.id,
    channel: { ...channelObject(guild, channel), permissions: appPermissions },
    member: memberObject(user, opts.roles ?? [], opts.memberPermissions ?? PERMS.member),
    authorizing_integration_owners: { '0': guild.id },
    context: 0,
  };
  return { payload, guildId: guild.id, channelId: channel.id };
}

function commandId(state: FakeState, name: string, guildId: string | undefined): { id: string; guild_id?: string } {
  const guildCmd = guildId ? state.commands.get(guildId)?.find((c) => c.name === name && c.type === 1) : undefined;
  if (guildCmd && guildId) return { id: guildCmd.id, guild_id: guildId };
  const global = state.commands.get('global')?.find((c) => c.name === name && c.type === 1);
  return { id: global?.id ?? snowflake() };
}

function commandData(state: FakeState, opts: SlashCommandOptions, guildId: string | undefined): Record<string, any> {
  let options: APIOption[] = [...(opts.options ?? [])];
  const resolved: Record<string, any> = { ...opts.resolved };
  for (const [name, att] of Object.entries(opts.attachments ?? {})) {
    const id = snowflake();
    options.push({ name, type: 11, value: id });
    // Discord measures an image upload and declares its size; a test may declare another (a lying client).
    const served = att.url.startsWith(state.baseUrl) ? state.cdn.get(att.url.slice(state.baseUrl.length).split('?')[0]!) : undefined;
    const measured = served && 'data' in served ? imageSize(served.data) : undefined;
    resolved.attachments = {
      ...resolved.attachments,
      [id]: { id, proxy_url: att.url, ephemeral: true, ...measured, ...att },
    };
  }
  if (opts.subcommand) options = [{ name: opts.subcommand, type: 1, options }];
  if (opts.subcommandGroup) options = [{ name: opts.subcommandGroup, type: 2, options }];
  return {
    ...commandId(state, opts.name, guildId),
    name: opts.name,
    type: 1,
    ...(options.length ? { options } : {}),
    ...(Object.keys(resolved).length ? { resolved } : {}),
  };
}

/** Type 2 chat-input command. */
export function buildSlashCommand(state: FakeState, opts: SlashCommandOptions): BuiltInteraction {
  const built = envelope(state, 2, opts);
  built.payload.data = commandData(state, opts, built.guildId);
  return built;
}

function markFocused(options: APIOption[] | undefined, name: string): boolean {
  for (const o of options ?? []) {
    if ((o.type === 1 || o.type === 2) && markFocused(o.options, name)) return true;
    if (o.name === name && o.type !== 1 && o.type !== 2) {
      o.focused = true;
      return true;
    }
  }
  return false;
}

/** Type 4 autocomplete; the focused option is added as an empty string option when missing. */
export function buildAutocomplete(state: FakeState, opts: AutocompleteOptions): BuiltInteraction {
  const built = envelope(state, 4, opts);
  const data = commandData(state, { ...opts, options: structuredClone(opts.options ?? []) }, built.guildId);
  if (!markFocused(data.options, opts.focused)) {
    const leaf = data.options?.[0]?.type === 1 ? data.options[0] : data.options?.[0]?.type === 2 ? data.options[0].options[0] : data;
    leaf.options = [...(leaf.options ?? []), { name: opts.focused, type: 3, value: '', focused: true }];
  }
  built.payload.data = data;
  return built;
}

function sourceMessage(state: FakeState, id: string): FakeMessage {
  const msg = state.messages.get(id);
  if (!msg || msg.deleted) throw new Error(`fake discord: message ${id} does not exist (or was deleted)`);
  return msg;
}

/** Type 3 component interaction on a stored message. */
export function buildButtonPress(state: FakeState, opts: ButtonPressOptions): BuiltInteraction {
  const msg = sourceMessage(state, opts.messageId);
  const built = envelope(state, 3, opts, msg);
  built.payload.data = {
    custom_id: opts.customId,
    component_type: opts.componentType ?? 2,
    ...(opts.values ? { values: opts.values } : {}),
  };
  built.payload.message = toApiMessage(state, msg);
  built.sourceMessageId = msg.id;
  return built;
}

/** Type 5 modal submit. */
export function buildModalSubmit(state: FakeState, opts: ModalSubmitOptions): BuiltInteraction {
  const msg = opts.messageId ? sourceMessage(state, opts.messageId) : undefined;
  const built = envelope(state, 5, opts, msg);
  const components = Object.entries(opts.fields).map(([customId, value], i) => {
    const input = { type: 4, id: i * 2 + 2, custom_id: customId, value };
    return opts.layout === 'label' ? { type: 18, id: i * 2 + 1, component: input } : { type: 1, id: i * 2 + 1, components: [input] };
  });
  built.payload.data = { custom_id: opts.customId, components };
  if (msg) {
    built.payload.message = toApiMessage(state, msg);
    built.sourceMessageId = msg.id;
  }
  return built;
}

/** Stores the interaction (fresh token, timestamps) so REST routes can find it. */
export function registerInteraction(state: FakeState, built: BuiltInteraction, user = DEFAULT_USER): InteractionRecord {
  const { payload } = built;
  payload.token = interactionToken(payload.id);
  const createdAt = preciseNow();
  const record: InteractionRecord = {
    id: payload.id,
    token: payload.token,
    type: payload.type,
    createdAt,
    payload,
    callbacks: [],
    followUps: [],
    channelId: built.channelId,
    ...(built.guildId ? { guildId: built.guildId } : {}),
    ...(built.sourceMessageId ? { sourceMessageId: built.sourceMessageId } : {}),
    user,
    sizeLimit: payload.attachment_size_limit,
    expiresAt: createdAt + state.opts.interactionTokenLifetimeMs,
    callbackWaiters: [],
    original: () => (record.originalId ? state.messages.get(record.originalId) : undefined),
    waitForCallback: (timeoutMs = 10_000) =>
      new Promise<FakeCallback>((resolve, reject) => {
        const first = record.callbacks[0];
        if (first) return resolve(first);
        const timer = setTimeout(
          () => reject(new Error(`fake discord: no callback for interaction ${record.id} within ${timeoutMs} ms`)),
          timeoutMs,
        );
        record.callbackWaiters.push((cb) => {
          clearTimeout(timer);
          resolve(cb);
        });
      }),
    expire: () => {
      record.expiresAt = Date.now() - 1;
    },
  };
  state.interactions.set(record.id, record);
  state.interactionsByToken.set(record.token, record);
  return record;
}
