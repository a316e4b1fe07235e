/**
 * Bot-authenticated REST routes: gateway info, users, applications, commands, channels, messages.
 * @module
 */
import type { Route, RouteCtx } from './http.js';
import { DEFAULT_ATTACHMENT_LIMIT } from './ids.js';
import { createMessage, editMessage, FLAGS, toApiMessage } from './messages.js';
import { applicationObject, channelObject, commandObject, userObject } from './payloads.js';
import type { FakeState } from './state.js';
import type { FakeMessage } from './types.js';
import { apiError, ERR, type Reply, validateMessage } from './validate.js';

const S = '(\\d{17,20})';
const NONCE_WINDOW_MS = 5 * 60 * 1000;
const missingAccess = (): Reply => apiError(403, 50001, 'Missing Access');

function gatewayBot(ctx: RouteCtx): Reply {
  const { state } = ctx;
  return {
    status: 200,
    body: {
      url: state.url('/gateway').replace(/^http/, 'ws'),
      shards: state.opts.shards,
      session_start_limit: { total: 1000, remaining: 999, reset_after: 14_400_000, max_concurrency: state.opts.maxConcurrency },
    },
  };
}

const NAME_RE = /^[-_'\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$/u;

// The checks Discord applies most often to bulk-overwrite bodies.
function commandErrors(cmds: any[]): Record<string, any> | undefined {
  const errors: Record<string, any> = {};
  const add = (path: string[], code: string, message: string): void => {
    let node = errors;
    for (const k of path) node = node[k] ??= {};
    (node._errors ??= []).push({ code, message });
  };
  const checkOptions = (path: string[], options: any[] | undefined): void => {
    if (!options) return;
    if (options.length > 25) add([...path, 'options'], 'BASE_TYPE_MAX_LENGTH', 'Must be 25 or fewer in length.');
    let seenOptional = false;
    options.forEach((o, i) => {
      const p = [...path, 'options', String(i)];
      if (typeof o?.name !== 'string' || !NAME_RE.test(o.name) || o.name !== o.name.toLowerCase()) {
        add([...p, 'name'], 'APPLICATION_COMMAND_INVALID_NAME', 'Command name is invalid');
      }
      if (typeof o?.description !== 'string' || o.description.length < 1 || o.description.length > 100) {
        add([...p, 'description'], 'BASE_TYPE_BAD_LENGTH', 'Must be between 1 and 100 in length.');
      }
      if (Array.isArray(o?.choices) && o.choices.length > 25)
        add([...p, 'choices'], 'BASE_TYPE_MAX_LENGTH', 'Must be 25 or fewer in length.');
      if (o?.type === 1 || o?.type === 2) checkOptions(p, o.options);
      else if (o?.required) {
        if (seenOptional)
          add(p, 'APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID', 'Required options must be placed before non-required options');
      } else seenOptional = true;
    });
  };
  cmds.forEach((c, i) => {
    const chatInput = (c?.type ?? 1) === 1;
    if (typeof c?.name !== 'string' || !NAME_RE.test(c.name) || (chatInput && c.name !== c.name.toLowerCase())) {
      add([String(i), 'name'], 'APPLICATION_COMMAND_INVALID_NAME', 'Command name is invalid');
    }
    if (chatInput && (typeof c?.description !== 'string' || c.description.length < 1 || c.description.length > 100)) {
      add([String(i), 'description'], 'BASE_TYPE_BAD_LENGTH', 'Must be between 1 and 100 in length.');
    }
    checkOptions([String(i)], c?.options);
  });
  return Object.keys(errors).length ? errors : undefined;
}

function commandScope(ctx: RouteCtx): string | Reply {
  const [app, guildId] = ctx.params;
  if (app !== ctx.state.opts.appId) return missingAccess();
  if (guildId !== undefined && !ctx.state.guild(guildId)) return missingAccess();
  return guildId ?? 'global';
}

function putCommands(ctx: RouteCtx): Reply {
  const scope = commandScope(ctx);
  if (typeof scope !== 'string') return scope;
  if (!Array.isArray(ctx.json))
    return apiError(400, 50035, 'Invalid Form Body', {
      _errors: [{ code: 'LIST_TYPE_CONVERT', message: 'Only iterables may be used in a ListType' }],
    });
  const errors = commandErrors(ctx.json);
  if (errors) return apiError(400, 50035, 'Invalid Form Body', errors);
  const previous = ctx.state.commands.get(scope);
  const guildId = scope === 'global' ? undefined : scope;
  const stored = ctx.json.map((c: any) => commandObject(ctx.state, c, guildId, previous));
  ctx.state.commands.set(scope, stored);
  return { status: 200, body: stored };
}

function postCommand(ctx: RouteCtx): Reply {
  const scope = commandScope(ctx);
  if (typeof scope !== 'string') return scope;
  const errors = commandErrors([ctx.json]);
  if (errors) return apiError(400, 50035, 'Invalid Form Body', errors['0']);
  const list = ctx.state.commands.get(scope) ?? [];
  const cmd = commandObject(ctx.state, ctx.json, scope === 'global' ? undefined : scope, list);
  const existing = list.findIndex((c) => c.id === cmd.id);
  if (existing >= 0) list[existing] = cmd;
  else list.push(cmd);
  ctx.state.commands.set(scope, list);
  return { status: existing >= 0 ? 200 : 201, body: cmd };
}

function getCommands(ctx: RouteCtx): Reply {
  const scope = commandScope(ctx);
  if (typeof scope !== 'string') return scope;
  return { status: 200, body: ctx.state.commands.get(scope) ?? [] };
}

/** A live, non-ephemeral message in a channel (ephemeral ones are invisible to channel routes). */
function channelMessage(state: FakeState, channelId: string, id: string): FakeMessage | undefined {
  const msg = state.messages.get(id);
  if (!msg || msg.deleted || msg.channelId !== channelId || (msg.flags & FLAGS.ephemeral) !== 0) return undefined;
  return msg;
}

function createChannelMessage(ctx: RouteCtx): Reply {
  const { state, json, files } = ctx;
  const [channelId = ''] = ctx.params;
  const found = state.channel(channelId);
  if (!found) return ERR.unknownChannel();
  if (!state.inGuild(found.guild.id)) return missingAccess();
  const invalid = validateMessage(json, files, DEFAULT_ATTACHMENT_LIMIT, true);
  if (invalid) return invalid;
  const nonce = json?.nonce === undefined || json.nonce === null ? undefined : String(json.nonce);
  const key = `${channelId}:${nonce}`;
  if (nonce !== undefined && json.enforce_nonce === true) {
    const seen = state.nonces.get(key);
    const prior = seen && Date.now() - seen.at < NONCE_WINDOW_MS ? state.messages.get(seen.messageId) : undefined;
    if (prior) return { status: 200, body: toApiMessage(state, prior) };
  }
  const ref = json?.message_reference;
  if (ref?.message_id && ref.fail_if_not_exists !== false && !channelMessage(state, ref.channel_id ?? channelId, ref.message_id)) {
    return apiError(400, 50035, 'Invalid Form Body', {
      message_reference: { _errors: [{ code: 'MESSAGE_REFERENCE_UNKNOWN_MESSAGE', message: 'Unknown message' }] },
    });
  }
  const msg = createMessage(
    state,
    {
      channelId,
      guildId: found.guild.id,
      type: ref?.message_id ? 19 : 0,
      allowEphemeral: false,
      ...(nonce === undefined ? {} : { nonce }),
    },
    json,
    files,
  );
  if (nonce !== undefined) state.nonces.set(key, { messageId: msg.id, at: Date.now() });
  return { status: 200, body: toApiMessage(state, msg) };
}

function withChannelMessage(fn: (ctx: RouteCtx, msg: FakeMessage) => Reply): (ctx: RouteCtx) => Reply {
  return (ctx) => {
    const [channelId = '', id = ''] = ctx.params;
    const found = ctx.state.channel(channelId);
    if (!found) return ERR.unknownChannel();
    if (!ctx.state.inGuild(found.guild.id)) return missingAccess();
    const msg = channelMessage(ctx.state, channelId, id);
    return msg ? fn(ctx, msg) : ERR.unknownMessage();
  };
}

/** Routes requiring `Authorization: Bot <token>`. */
export function botRoutes(): Route[] {
  const r = (method: string, path: string, name: string, handle: Route['handle']): Route => ({
    method,
    pattern: new RegExp(`^${path}$`),
    auth: true,
    name,
    handle,
  });
  return [
    r('GET', '/gateway/bot', 'gateway', gatewayBot),
    r('GET', '/users/@me', 'users/@me', (ctx) => ({
      status: 200,
      body: { ...userObject(ctx.state.botUser), verified: true, mfa_enabled: false },
    })),
    r('GET', '/applications/@me', 'applications/@me', (ctx) => ({ status: 200, body: applicationObject(ctx.state) })),
    r('PUT', `/applications/${S}/commands`, 'commands', putCommands),
    r('GET', `/applications/${S}/commands`, 'commands', getCommands),
    r('POST', `/applications/${S}/commands`, 'commands:post', postCommand),
    r('PUT', `/applications/${S}/guilds/${S}/commands`, 'guild-commands', putCommands),
    r('GET', `/applications/${S}/guilds/${S}/commands`, 'guild-commands', getCommands),
    r('POST', `/applications/${S}/guilds/${S}/commands`, 'guild-commands:post', postCommand),
    r('GET', `/channels/${S}`, 'channel', (ctx) => {
      const found = ctx.state.channel(ctx.params[0] ?? '');
      if (found && !ctx.state.inGuild(found.guild.id)) return missingAccess();
      return found ? { status: 200, body: channelObject(found.guild, found.channel) } : ERR.unknownChannel();
    }),
    r('POST', `/channels/${S}/messages`, 'channel-messages:post', createChannelMessage),
    r(
      'GET',
      `/channels/${S}/messages/${S}`,
      'channel-message:get',
      withChannelMessage((ctx, msg) => ({ status: 200, body: toApiMessage(ctx.state, msg) })),
    ),
    r(
      'PATCH',
      `/channels/${S}/messages/${S}`,
      'channel-message:patch',
      withChannelMessage((ctx, msg) => {
        const invalid = validateMessage(ctx.json, ctx.files, DEFAULT_ATTACHMENT_LIMIT, false);
        if (invalid) return invalid;
        editMessage(ctx.state, msg, ctx.json, ctx.files);
        return { status: 200, body: toApiMessage(ctx.state, msg) };
      }),
    ),
    r(
      'DELETE',
      `/channels/${S}/messages/${S}`,
      'channel-message:delete',
      withChannelMessage((_ctx, msg) => {
        msg.deleted = true;
        return { status: 204 };
      }),
    ),
  ];
}
