/**
 * Public types of the fake Discord server (REST + Gateway) used by end-to-end tests.
 * @module
 */
import type { IncomingHttpHeaders } from 'node:http';

/** A user as the fake renders it into interactions and messages. */
export interface FakeUser {
  id: string;
  username: string;
  globalName?: string | null;
  avatar?: string | null;
  bot?: boolean;
}

/** A guild channel. `type` defaults to 0 (text). */
export interface FakeChannel {
  id: string;
  name: string;
  nsfw?: boolean;
  type?: number;
  parentId?: string | null;
  topic?: string | null;
}

/** A guild role; `permissions` is a bigint decimal string. */
export interface FakeRole {
  id: string;
  name: string;
  permissions: string;
  position?: number;
  color?: number;
  managed?: boolean;
}

/** A guild served in READY / GUILD_CREATE. An `@everyone` role (id = guild id) is added when missing. */
export interface FakeGuild {
  id: string;
  name: string;
  channels: FakeChannel[];
  /** Defaults to a user that is neither the bot nor the default interaction user. */
  ownerId?: string;
  roles?: FakeRole[];
  preferredLocale?: string;
}

/** Options of {@link startFakeDiscord}. */
export interface FakeDiscordOptions {
  /** Application id, also the bot user id. Default `'1111111111111111111'`. */
  appId?: string;
  /** Accepted bot token. Default `'fake-token'`. */
  token?: string;
  /** Bot username. Default `'fakebot'`. */
  botUsername?: string;
  /** Guilds; default one "Test Guild" with `general` (sfw) and `nsfw-art` (nsfw). */
  guilds?: FakeGuild[];
  /** Recommended shard count returned by `GET /gateway/bot`. Default 1. */
  shards?: number;
  /**
   * `session_start_limit.max_concurrency`. Default 16 so multi-shard clients identify in parallel
   * (with 1, @discordjs/ws spaces identifies 5 s apart – real, but slow in tests).
   */
  maxConcurrency?: number;
  /** Gateway heartbeat interval. Default 1000 ms. */
  heartbeatIntervalMs?: number;
  /** Interaction token lifetime for webhook calls. Default 15 min. */
  interactionTokenLifetimeMs?: number;
  /** Deadline for the first interaction callback. Default 3000 ms. */
  ackDeadlineMs?: number;
  /** Every REST answer leaves this long after its request took effect: the network's round trip to Discord. Default 0. */
  answerDelayMs?: number;
}

/** A file part of a multipart request. */
export interface RecordedFile {
  /** Form field name, e.g. `files[0]`. */
  name: string;
  filename: string;
  contentType?: string;
  data: Buffer;
}

/** One HTTP request received by the fake. */
export interface Recorded {
  at: number;
  method: string;
  /** Path without the `/api/v10` prefix and without the query string (CDN paths are kept whole). */
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  /** JSON body, or the parsed `payload_json` part of a multipart body. */
  json?: any;
  files: RecordedFile[];
  /** Status the fake answered (0 while the request is still being handled). */
  status: number;
  /** When the answer was sent (a slowed answer: after its delay). */
  answeredAt?: number;
}

/** An attachment stored on a {@link FakeMessage}. */
export interface FakeAttachment {
  id: string;
  filename: string;
  size: number;
  data: Buffer;
  contentType?: string;
  width?: number;
  height?: number;
  description?: string;
  /** CDN URL served by the fake. */
  url: string;
}

/** A message as stored by the fake (interaction replies, follow-ups, channel messages). */
export interface FakeMessage {
  id: string;
  channelId: string;
  guildId?: string;
  /** Message type: 0 default, 19 reply, 20 chat-input command response. */
  type: number;
  authorId: string;
  webhookId?: string;
  /** Interaction that produced this message, if any. */
  interactionId?: string;
  content: string;
  embeds: any[];
  components: any[];
  flags: number;
  tts: boolean;
  attachments: FakeAttachment[];
  allowedMentions?: any;
  messageReference?: any;
  nonce?: string;
  deleted: boolean;
  createdAt: number;
  edits: number;
  editTimes: number[];
  /** Last JSON body (or `payload_json`) that created or edited the message. */
  raw: any;
}

/** One accepted interaction callback. */
export interface FakeCallback {
  at: number;
  type: number;
  data?: any;
  files: RecordedFile[];
  withResponse: boolean;
}

/** An interaction dispatched by the fake, with everything the bot answered. */
export interface FakeInteraction {
  id: string;
  token: string;
  /** Interaction type: 2 command, 3 component, 4 autocomplete, 5 modal submit. */
  type: number;
  createdAt: number;
  /** The INTERACTION_CREATE `d` payload as sent. */
  payload: any;
  /** Accepted callbacks in order (rejected ones are only in `fake.requests`). */
  callbacks: FakeCallback[];
  /** The `@original` message as last set (for deferred component updates: the clicked message). */
  original(): FakeMessage | undefined;
  followUps: FakeMessage[];
  /** Resolves at the first accepted callback (immediately if there is one). */
  waitForCallback(timeoutMs?: number): Promise<FakeCallback>;
  /** Expires the token now: later webhook calls answer 401 / 50027. */
  expire(): void;
}

/** An application command option as sent in interaction data. */
export interface APIOption {
  name: string;
  type: number;
  value?: string | number | boolean;
  options?: APIOption[];
  focused?: boolean;
}

/** An attachment given to a slash command option (type 11). */
export interface FakeOptionAttachment {
  filename: string;
  url: string;
  size: number;
  content_type?: string;
  width?: number;
  height?: number;
}

/** Options shared by every interaction builder. */
export interface InteractionBaseOptions {
  user?: FakeUser;
  /** Default: the first guild. `null` → a DM with the bot. */
  guildId?: string | null;
  /** Default: the guild's first channel (or the clicked message's channel). */
  channelId?: string;
  /** Member permissions (bigint decimal string). Default: a plain member without ManageGuild. */
  memberPermissions?: string;
  roles?: string[];
  appPermissions?: string;
  locale?: string;
  attachmentSizeLimit?: number;
}

/** Options of `fake.slashCommand`. */
export interface SlashCommandOptions extends InteractionBaseOptions {
  name: string;
  options?: APIOption[];
  /** Wraps `options` in a type-1 sub-command option. */
  subcommand?: string;
  /** Wraps the sub-command in a type-2 group. */
  subcommandGroup?: string;
  /** Attachment options by option name: added as type-11 options with `resolved.attachments`. */
  attachments?: Record<string, FakeOptionAttachment>;
  /** Extra `data.resolved` entries (users, members, roles, channels). */
  resolved?: Record<string, any>;
}

/** Options of `fake.autocomplete`: a slash command plus the focused option's name. */
export interface AutocompleteOptions extends SlashCommandOptions {
  focused: string;
}

/** Options of `fake.buttonPress` (also usable for selects via `componentType` + `values`). */
export interface ButtonPressOptions extends InteractionBaseOptions {
  customId: string;
  messageId: string;
  componentType?: number;
  values?: string[];
}

/** Options of `fake.modalSubmit`. */
export interface ModalSubmitOptions extends InteractionBaseOptions {
  customId: string;
  fields: Record<string, string>;
  /** Message the modal was opened from (enables callback types 6/7). */
  messageId?: string;
  /** Submitted component layout: legacy action rows (default) or label components (type 18). */
  layout?: 'actionRow' | 'label';
}

/** Selects requests for `rateLimitNext` / `failNext`. */
export interface RequestMatcher {
  method?: string;
  /** Matched against {@link Recorded.path} (API paths without `/api/v10`). */
  pathPrefix: string;
  count: number;
}
