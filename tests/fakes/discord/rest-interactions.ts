/**
 * Interaction REST routes (no bot auth): the callback and the interaction webhook (reference §7).
 * @module
 */

import type { Route, RouteCtx } from './http.js';
import { preciseNow } from './ids.js';
import { createMessage, editMessage, FLAGS, toApiMessage } from './messages.js';
import type { InteractionRecord } from './state.js';
import type { FakeCallback, FakeMessage } from './types.js';
import { apiError, ERR, type Reply, validateMessage } from './validate.js';

const S = '(\\d{17,20})';
const TOKEN = '([A-Za-z0-9_.-]+)';

// Callback types each interaction type accepts (6/7 need a message to update).
function allowedTypes(it: InteractionRecord): number[] {
  switch (it.type) {
    case 2:
      return [4, 5, 9];
    case 3:
      return [4, 5, 6, 7, 9];
    case 4:
      return [8];
    case 5:
      return it.sourceMessageId ? [4, 5, 6, 7] : [4, 5];
    default:
      return [];
  }
}

function invalidType(): Reply {
  return apiError(400, 50035, 'Invalid Form Body', {
    type: {
      _errors: [{ code: 'INTERACTION_RESPONSE_TYPE_INVALID', message: 'Interaction response type is invalid for this interaction.' }],
    },
  });
}

function messageType(it: InteractionRecord): number {
  return it.type === 2 ? 20 : 19;
}

function liveMessage(ctx: RouteCtx, id: string | undefined): FakeMessage | undefined {
  const msg = id ? ctx.state.messages.get(id) : undefined;
  return msg && !msg.deleted ? msg : undefined;
}

/** Validates and applies a callback; returns an error reply or the affected message. */
function applyCallback(ctx: RouteCtx, it: InteractionRecord, type: number, data: any): Reply | FakeMessage | undefined {
  const { state, files } = ctx;
  const base = {
    channelId: it.channelId,
    ...(it.guildId ? { guildId: it.guildId } : {}),
    webhookId: state.opts.appId,
    interaction: it,
    allowEphemeral: true,
  };
  switch (type) {
    case 4: {
      const invalid = validateMessage(data, files, it.sizeLimit, true);
      if (invalid) return invalid;
      const msg = createMessage(state, { ...base, type: messageType(it) }, data, files);
      it.originalId = msg.id;
      return msg;
    }
    case 5: {
      const msg = createMessage(
        state,
        { ...base, type: messageType(it), extraFlags: FLAGS.loading },
        { content: '', flags: (data?.flags ?? 0) & FLAGS.ephemeral },
        [],
      );
      it.originalId = msg.id;
      return msg;
    }
    case 6:
    case 7: {
      const msg = liveMessage(ctx, it.sourceMessageId);
      if (!msg) return ERR.unknownMessage();
      if (type === 7) {
        const invalid = validateMessage(data, files, it.sizeLimit, false);
        if (invalid) return invalid;
        editMessage(state, msg, data, files);
      }
      it.originalId = msg.id;
      return msg;
    }
    case 8: {
      const choices = data?.choices;
      if (!Array.isArray(choices) || choices.length > 25) {
        return apiError(400, 50035, 'Invalid Form Body', {
          data: { choices: { _errors: [{ code: 'BASE_TYPE_MAX_LENGTH', message: 'Must be 25 or fewer in length.' }] } },
        });
      }
      return undefined;
    }
    case 9: {
      const rows = data?.components;
      const bad =
        typeof data?.custom_id !== 'string' ||
        typeof data?.title !== 'string' ||
        data.title.length > 45 ||
        !Array.isArray(rows) ||
        rows.length < 1 ||
        rows.length > 5;
      return bad ? apiError(400, 50035, 'Invalid Form Body') : undefined;
    }
    default:
      return invalidType();
  }
}

function callback(ctx: RouteCtx): Reply {
  const { state, json } = ctx;
  const [id = '', token = ''] = ctx.params;
  const it = state.interactions.get(id);
  if (!it || it.token !== token) return ERR.unknownInteraction();
  if (it.callbacks.length > 0) return ERR.alreadyAcked();
  if (Date.now() - it.createdAt > state.opts.ackDeadlineMs) return ERR.unknownInteraction();
  const type = json?.type;
  if (typeof type !== 'number' || !allowedTypes(it).includes(type)) return invalidType();
  const result = applyCallback(ctx, it, type, json?.data);
  if (result && 'status' in result) return result;
  const cb: FakeCallback = {
    at: preciseNow(),
    type,
    ...(json?.data === undefined ? {} : { data: json.data }),
    files: ctx.files,
    withResponse: ctx.query.get('with_response') === 'true',
  };
  it.callbacks.push(cb);
  for (const waiter of it.callbackWaiters.splice(0)) waiter(cb);
  if (!cb.withResponse) return { status: 204 };
  const msg = result;
  return {
    status: 200,
    body: {
      interaction: {
        id: it.id,
        type: it.type,
        ...(msg
          ? {
              response_message_id: msg.id,
              response_message_loading: (msg.flags & FLAGS.loading) !== 0,
              response_message_ephemeral: (msg.flags & FLAGS.ephemeral) !== 0,
            }
          : {}),
      },
      ...(type === 9 ? {} : { resource: { type, ...(msg ? { message: toApiMessage(state, msg) } : {}) } }),
    },
  };
}

function webhookInteraction(ctx: RouteCtx): InteractionRecord | Reply {
  const [app, token = ''] = ctx.params;
  if (app !== ctx.state.opts.appId) return ERR.unknownWebhook();
  const it = ctx.state.interactionsByToken.get(token);
  if (!it || Date.now() > it.expiresAt) return ERR.invalidWebhookToken();
  // The webhook only exists once the interaction has been acknowledged.
  if (it.callbacks.length === 0) return ERR.unknownWebhook();
  return it;
}

function withWebhookMessage(fn: (ctx: RouteCtx, it: InteractionRecord, msg: FakeMessage) => Reply): Route['handle'] {
  return (ctx) => {
    const it = webhookInteraction(ctx);
    if ('status' in it) return it;
    const ref = ctx.params[2];
    const owned = ref === '@original' || ref === it.originalId || it.followUps.some((m) => m.id === ref);
    const msg = owned ? liveMessage(ctx, ref === '@original' ? it.originalId : ref) : undefined;
    return msg ? fn(ctx, it, msg) : ERR.unknownMessage();
  };
}

function followUp(ctx: RouteCtx): Reply {
  const it = webhookInteraction(ctx);
  if ('status' in it) return it;
  const { state, json, files } = ctx;
  const invalid = validateMessage(json, files, it.sizeLimit, true);
  if (invalid) return invalid;
  const original = it.originalId ? state.messages.get(it.originalId) : undefined;
  let msg: FakeMessage;
  if (original && (original.flags & FLAGS.loading) !== 0 && !it.originalDeletedByApp) {
    // After a deferral the first follow-up replaces the "thinking" placeholder (ephemerality inherited);
    // if the user deleted the placeholder, Discord answers Unknown Message. Once the app itself has
    // deleted it, a follow-up is a new message with its own flags (discord-api-docs#2739, fixed 2021).
    if (original.deleted) return ERR.unknownMessage();
    const { flags: _ignored, ...rest } = json ?? {};
    editMessage(state, original, rest, files, false);
    msg = original;
  } else {
    const base = {
      channelId: it.channelId,
      ...(it.guildId ? { guildId: it.guildId } : {}),
      webhookId: state.opts.appId,
      interaction: it,
      allowEphemeral: true,
    };
    msg = createMessage(state, { ...base, type: messageType(it) }, json, files);
  }
  it.followUps.push(msg);
  return ctx.query.get('wait') === 'true' ? { status: 200, body: toApiMessage(state, msg) } : { status: 204 };
}

/** Interaction routes (sent by discord.js with `auth: false`). */
export function interactionRoutes(): Route[] {
  const r = (method: string, path: string, name: string, handle: Route['handle']): Route => ({
    method,
    pattern: new RegExp(`^${path}$`),
    auth: false,
    name,
    handle,
  });
  const msgPath = `/webhooks/${S}/${TOKEN}/messages/(@original|\\d{17,20})`;
  return [
    r('POST', `/interactions/${S}/${TOKEN}/callback`, 'interaction-callback', callback),
    r('POST', `/webhooks/${S}/${TOKEN}`, 'webhook:post', followUp),
    r(
      'GET',
      msgPath,
      'webhook-message:get',
      withWebhookMessage((ctx, _it, msg) => ({ status: 200, body: toApiMessage(ctx.state, msg) })),
    ),
    r(
      'PATCH',
      msgPath,
      'webhook-message:patch',
      withWebhookMessage((ctx, it, msg) => {
        const invalid = validateMessage(ctx.json, ctx.files, it.sizeLimit, false);
        if (invalid) return invalid;
        editMessage(ctx.state, msg, ctx.json, ctx.files);
        return { status: 200, body: toApiMessage(ctx.state, msg) };
      }),
    ),
    r(
      'DELETE',
      msgPath,
      'webhook-message:delete',
      withWebhookMessage((_ctx, it, msg) => {
        msg.deleted = true;
        if (msg.id === it.originalId) it.originalDeletedByApp = true;
        return { status: 204 };
      }),
    ),
  ];
}
