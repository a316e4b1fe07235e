/**
 * Message store: creation, edits with attachment semantics, and API serialization (reference §8–9).
 * @module
 */
import { randomBytes } from 'node:crypto';
import { snowflake } from './ids.js';
import { attachmentContentType, imageSize } from './multipart.js';
import { userObject } from './payloads.js';
import type { FakeState, InteractionRecord } from './state.js';
import type { FakeAttachment, FakeMessage, RecordedFile } from './types.js';

/** Message flags the fake cares about. */
export const FLAGS = { suppressEmbeds: 4, ephemeral: 64, loading: 128, suppressNotifications: 4096, componentsV2: 32768 };

/** Where and how a new message is created. */
export interface MessageInit {
  channelId: string;
  guildId?: string;
  type: number;
  webhookId?: string;
  interaction?: InteractionRecord;
  /** Whether the ephemeral flag of the body is honoured (interaction messages only). */
  allowEphemeral: boolean;
  extraFlags?: number;
  nonce?: string;
}

function fileIndex(file: RecordedFile, position: number): string {
  return /^files\[(\d+)\]$/.exec(file.name)?.[1] ?? String(position);
}

function storeAttachment(state: FakeState, channelId: string, file: RecordedFile, description?: string): FakeAttachment {
  const id = snowflake();
  const filename = file.filename.replace(/\s/g, '_') || 'unknown';
  const path = `/attachments/${channelId}/${id}/${filename}`;
  const contentType = attachmentContentType(filename, file.contentType);
  state.cdn.set(path, { data: file.data, ...(contentType ? { contentType } : {}) });
  const now = Math.floor(Date.now() / 1000);
  // Real CDN links carry signed expiry params; the fake ignores them when serving.
  const query = `?ex=${(now + 86400).toString(16)}&is=${now.toString(16)}&hm=${randomBytes(32).toString('hex')}&`;
  const size = imageSize(file.data);
  return {
    id,
    filename,
    size: file.data.length,
    data: file.data,
    url: state.url(`/attachments/${channelId}/${id}/${encodeURIComponent(filename)}${query}`),
    ...(contentType ? { contentType } : {}),
    ...(size ?? {}),
    ...(description ? { description } : {}),
  };
}

function newAttachments(state: FakeState, channelId: string, body: any, files: RecordedFile[]): FakeAttachment[] {
  const meta: any[] = Array.isArray(body?.attachments) ? body.attachments : [];
  return files.map((file, i) => {
    const m = meta.find((a) => String(a?.id) === fileIndex(file, i));
    return storeAttachment(state, channelId, file, typeof m?.description === 'string' ? m.description : undefined);
  });
}

// Discord resolves `attachment://name` in embeds to the uploaded file's CDN URL.
function normalizeEmbeds(embeds: any[], attachments: FakeAttachment[]): any[] {
  const resolve = (media: any): any => {
    if (!media || typeof media.url !== 'string' || !media.url.startsWith('attachment://')) return media;
    const att = attachments.find((a) => a.filename === media.url.slice('attachment://'.length));
    if (!att) return media;
    return { ...media, url: att.url, proxy_url: att.url, width: att.width, height: att.height, content_type: att.contentType };
  };
  return embeds.map((e) => ({
    type: 'rich',
    ...e,
    ...(e?.image ? { image: resolve(e.image) } : {}),
    ...(e?.thumbnail ? { thumbnail: resolve(e.thumbnail) } : {}),
  }));
}

/** Creates and stores a message from a (validated) create body. */
export function createMessage(state: FakeState, init: MessageInit, body: any, files: RecordedFile[]): FakeMessage {
  const b = body ?? {};
  const attachments = newAttachments(state, init.channelId, b, files);
  const keep = FLAGS.suppressEmbeds | FLAGS.suppressNotifications | FLAGS.componentsV2 | (init.allowEphemeral ? FLAGS.ephemeral : 0);
  const msg: FakeMessage = {
    id: snowflake(),
    channelId: init.channelId,
    ...(init.guildId ? { guildId: init.guildId } : {}),
    type: init.type,
    authorId: state.botUser.id,
    ...(init.webhookId ? { webhookId: init.webhookId } : {}),
    ...(init.interaction ? { interactionId: init.interaction.id } : {}),
    content: typeof b.content === 'string' ? b.content : '',
    embeds: normalizeEmbeds(Array.isArray(b.embeds) ? b.embeds : [], attachments),
    components: Array.isArray(b.components) ? b.components : [],
    flags: ((b.flags ?? 0) & keep) | (init.extraFlags ?? 0),
    tts: b.tts === true,
    attachments,
    ...(b.allowed_mentions === undefined ? {} : { allowedMentions: b.allowed_mentions }),
    ...(b.message_reference === undefined ? {} : { messageReference: b.message_reference }),
    ...(init.nonce === undefined ? {} : { nonce: init.nonce }),
    deleted: false,
    createdAt: Date.now(),
    edits: 0,
    editTimes: [],
    raw: body,
  };
  state.messages.set(msg.id, msg);
  return msg;
}

/**
 * Applies an edit. Existing attachments survive only when listed by id in `attachments`
 * (or when the key is absent); new files are always added.
 * @param countAsEdit - false when a follow-up fills a deferred placeholder (not shown as edited)
 */
export function editMessage(state: FakeState, msg: FakeMessage, body: any, files: RecordedFile[], countAsEdit = true): void {
  const b = body ?? {};
  let kept = msg.attachments;
  if (Array.isArray(b.attachments)) {
    const listed = new Map<string, any>(b.attachments.map((a: any) => [String(a?.id), a]));
    kept = msg.attachments
      .filter((a) => listed.has(a.id))
      .map((a) => {
        const d = listed.get(a.id)?.description;
        return typeof d === 'string' ? { ...a, description: d } : a;
      });
  } else if (b.attachments === null) {
    kept = [];
  }
  msg.attachments = [...kept, ...newAttachments(state, msg.channelId, b, files)];
  if ('content' in b) msg.content = typeof b.content === 'string' ? b.content : '';
  if ('embeds' in b) msg.embeds = Array.isArray(b.embeds) ? b.embeds : [];
  msg.embeds = normalizeEmbeds(msg.embeds, msg.attachments);
  if ('components' in b) msg.components = Array.isArray(b.components) ? b.components : [];
  if ('allowed_mentions' in b) msg.allowedMentions = b.allowed_mentions;
  const editable = FLAGS.suppressEmbeds | FLAGS.componentsV2;
  const flags = typeof b.flags === 'number' ? (msg.flags & ~editable) | (b.flags & editable) : msg.flags;
  msg.flags = flags & ~FLAGS.loading;
  if (countAsEdit) {
    msg.edits += 1;
    msg.editTimes.push(Date.now());
  }
  msg.raw = body;
}

function attachmentObject(a: FakeAttachment, ephemeral: boolean): Record<string, unknown> {
  return {
    id: a.id,
    filename: a.filename,
    size: a.size,
    url: a.url,
    proxy_url: a.url,
    ...(a.contentType ? { content_type: a.contentType } : {}),
    ...(a.width === undefined ? {} : { width: a.width, height: a.height }),
    ...(a.description ? { description: a.description } : {}),
    ...(ephemeral ? { ephemeral: true } : {}),
  };
}

/** API message object (reference §9). */
export function toApiMessage(state: FakeState, msg: FakeMessage): Record<string, unknown> {
  const interaction = msg.interactionId ? state.interactions.get(msg.interactionId) : undefined;
  const ephemeral = (msg.flags & FLAGS.ephemeral) !== 0;
  const lastEdit = msg.editTimes[msg.editTimes.length - 1];
  return {
    id: msg.id,
    channel_id: msg.channelId,
    ...(msg.guildId ? { guild_id: msg.guildId } : {}),
    type: msg.type,
    content: msg.content,
    tts: msg.tts,
    flags: msg.flags,
    pinned: false,
    author: userObject(state.botUser),
    timestamp: new Date(msg.createdAt).toISOString(),
    edited_timestamp: lastEdit === undefined ? null : new Date(lastEdit).toISOString(),
    mention_everyone: false,
    mentions: [],
    mention_roles: [],
    attachments: msg.attachments.map((a) => attachmentObject(a, ephemeral)),
    embeds: msg.embeds,
    components: msg.components,
    ...(msg.webhookId ? { webhook_id: msg.webhookId, application_id: state.opts.appId } : {}),
    ...(msg.nonce === undefined ? {} : { nonce: msg.nonce }),
    ...(msg.messageReference
      ? { message_reference: { type: 0, channel_id: msg.channelId, guild_id: msg.guildId, ...msg.messageReference } }
      : {}),
    ...(interaction
      ? {
          interaction_metadata: {
            id: interaction.id,
            type: interaction.type,
            user: userObject(interaction.user),
            authorizing_integration_owners: interaction.payload.authorizing_integration_owners,
            ...(interaction.type === 2 ? { name: interaction.payload.data?.name, command_type: 1 } : {}),
            ...(interaction.sourceMessageId ? { interacted_message_id: interaction.sourceMessageId } : {}),
            ...(interaction.originalId && interaction.originalId !== msg.id
              ? { original_response_message_id: interaction.originalId }
              : {}),
          },
        }
      : {}),
  };
}
