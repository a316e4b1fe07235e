/**
 * Fake Discord (REST + Gateway + attachment CDN) on 127.0.0.1 for end-to-end tests with the real
 * discord.js client: `new Client({ intents, rest: { api: fake.apiUrl } })` then `client.login(token)`.
 * @module
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { FakeGateway } from './gateway.js';
import { createRequestListener } from './http.js';
import {
  type BuiltInteraction,
  buildAutocomplete,
  buildButtonPress,
  buildModalSubmit,
  buildSlashCommand,
  registerInteraction,
} from './interactions.js';
import { channelObject } from './payloads.js';
import { interactionRoutes } from './rest-interactions.js';
import { botRoutes } from './rest-routes.js';
import { FakeState, waitFor, waitForAsync } from './state.js';
import type {
  AutocompleteOptions,
  ButtonPressOptions,
  FakeDiscordOptions,
  FakeInteraction,
  FakeMessage,
  ModalSubmitOptions,
  Recorded,
  RequestMatcher,
  SlashCommandOptions,
} from './types.js';

export { DEFAULTS, PERMS, shardForGuild } from './ids.js';
export type * from './types.js';

/** A running fake Discord. */
export interface FakeDiscord {
  /** `http://127.0.0.1:PORT/api` – pass as discord.js `rest.api`. */
  readonly apiUrl: string;
  /** `http://127.0.0.1:PORT`. */
  readonly baseUrl: string;
  readonly appId: string;
  readonly token: string;
  /** Every HTTP request, in arrival order. */
  readonly requests: Recorded[];
  /** Requests to unknown routes (answered 599). Tests should assert this stays empty. */
  readonly unhandled: Recorded[];
  /** Requests to `/attachments/…`. */
  readonly cdnRequests: Recorded[];
  /** Every message by id (interaction replies, follow-ups, channel messages). */
  readonly messages: Map<string, FakeMessage>;
  /** Identify payloads received, in order. */
  readonly identifies: any[];
  /** Serves `data` at `/attachments/<path>` and returns its absolute URL. */
  serveFile(path: string, data: Buffer, contentType?: string): string;
  /** Answers `/attachments/<path>` with a 302 to `location`; returns the URL. */
  serveRedirect(path: string, location: string): string;
  /** Dispatches a chat-input command (type 2) on the shard owning the guild. */
  slashCommand(opts: SlashCommandOptions): Promise<FakeInteraction>;
  /** Dispatches an autocomplete interaction (type 4). */
  autocomplete(opts: AutocompleteOptions): Promise<FakeInteraction>;
  /** Dispatches a component interaction (type 3) for a stored message. */
  buttonPress(opts: ButtonPressOptions): Promise<FakeInteraction>;
  /** Dispatches a modal submit (type 5). */
  modalSubmit(opts: ModalSubmitOptions): Promise<FakeInteraction>;
  /** Sends any dispatch event on the shard owning `guildId` (shard 0 when omitted). */
  dispatch(event: string, data: unknown, guildId?: string): Promise<void>;
  /** Messages of a channel in creation order (deleted and ephemeral ones included). */
  channelMessages(channelId: string): FakeMessage[];
  /** Simulates a user deleting a message: later GET/PATCH answer 404 / 10008. */
  deleteMessage(id: string): void;
  /**
   * A moderator deletes a channel: its messages go with it (edits answer 10008, posts 10003) and
   * CHANNEL_DELETE is dispatched on the guild's shard.
   */
  deleteChannel(channelId: string): Promise<void>;
  /**
   * The bot is kicked from a guild (or the guild is deleted): GUILD_DELETE without `unavailable` on
   * its shard; bot-token routes in its channels then answer 403 50001 Missing Access, and a new
   * session's READY no longer lists it. Interaction webhooks keep working, as they do on Discord.
   */
  removeBotFromGuild(guildId: string, o?: { botOffline?: boolean }): Promise<void>;
  /** The next `count` matching requests answer 429 with rate-limit headers. */
  rateLimitNext(opts: RequestMatcher & { retryAfterS?: number }): void;
  /** The next `count` matching requests answer `status` with `body` (default a Discord-style error). */
  failNext(opts: RequestMatcher & { status: number; body?: unknown }): void;
  /** The next `count` matching requests take effect at once but are answered `ms` later (a slow network). */
  slowNext(opts: RequestMatcher & { ms: number }): void;
  /** Discord recovers: every rate limit and failure still pending from `rateLimitNext` and `failNext` is dropped. */
  stopInjecting(): void;
  /** Last bulk-overwritten (or created) commands: global without `guildId`. */
  registeredCommands(guildId?: string): any[];
  /** Polls `fn` every 10 ms until truthy; rejects after `timeoutMs`. */
  waitFor<T>(fn: () => T | undefined | null | false, timeoutMs?: number): Promise<T>;
  /** Polls the async `fn` every 10 ms (after each answer) until it resolves truthy; rejects after `timeoutMs`. */
  waitForAsync<T>(fn: () => Promise<T | undefined | null | false>, timeoutMs?: number): Promise<T>;
  /** Open gateway sockets. */
  gatewayConnections(): number;
  /** TCP connections clients have opened to this server so far (REST and gateway). */
  readonly connectionsOpened: number;
  /** Closes every gateway socket (default 4000 → the client resumes; 1006 → abrupt drop). */
  disconnectAll(code?: number): void;
  close(): Promise<void>;
}

class FakeDiscordServer implements FakeDiscord {
  readonly state: FakeState;
  private readonly gateway: FakeGateway;
  private readonly sockets = new Set<Socket>();
  connectionsOpened = 0;

  constructor(
    options: FakeDiscordOptions,
    private readonly server: Server = createServer(),
  ) {
    this.state = new FakeState(options);
    this.gateway = new FakeGateway(this.state);
    this.server.on('request', createRequestListener(this.state, [...botRoutes(), ...interactionRoutes()]));
    this.server.on('upgrade', (req, socket, head) => this.gateway.handleUpgrade(req, socket, head));
    this.server.on('connection', (socket) => {
      this.connectionsOpened++;
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', () => resolve());
    });
    this.state.baseUrl = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  get apiUrl(): string {
    return `${this.state.baseUrl}/api`;
  }
  get baseUrl(): string {
    return this.state.baseUrl;
  }
  get appId(): string {
    return this.state.opts.appId;
  }
  get token(): string {
    return this.state.opts.token;
  }
  get requests(): Recorded[] {
    return this.state.requests;
  }
  get unhandled(): Recorded[] {
    return this.state.unhandled;
  }
  get cdnRequests(): Recorded[] {
    return this.state.cdnRequests;
  }
  get messages(): Map<string, FakeMessage> {
    return this.state.messages;
  }
  get identifies(): any[] {
    return this.state.identifies;
  }

  private cdnPath(path: string): string {
    const clean = path.replace(/^\/+/, '').replace(/^attachments\//, '');
    return `/attachments/${clean}`;
  }

  serveFile(path: string, data: Buffer, contentType?: string): string {
    const p = this.cdnPath(path);
    this.state.cdn.set(p, { data, ...(contentType ? { contentType } : {}) });
    return this.state.url(p);
  }

  serveRedirect(path: string, location: string): string {
    const p = this.cdnPath(path);
    this.state.cdn.set(p, { redirect: location });
    return this.state.url(p);
  }

  private async send(built: BuiltInteraction, user: SlashCommandOptions['user']): Promise<FakeInteraction> {
    const record = registerInteraction(this.state, built, user);
    await this.gateway.dispatchTo(built.guildId, 'INTERACTION_CREATE', built.payload);
    return record;
  }

  slashCommand(opts: SlashCommandOptions): Promise<FakeInteraction> {
    return this.send(buildSlashCommand(this.state, opts), opts.user);
  }
  autocomplete(opts: AutocompleteOptions): Promise<FakeInteraction> {
    return this.send(buildAutocomplete(this.state, opts), opts.user);
  }
  buttonPress(opts: ButtonPressOptions): Promise<FakeInteraction> {
    return this.send(buildButtonPress(this.state, opts), opts.user);
  }
  modalSubmit(opts: ModalSubmitOptions): Promise<FakeInteraction> {
    return this.send(buildModalSubmit(this.state, opts), opts.user);
  }
  dispatch(event: string, data: unknown, guildId?: string): Promise<void> {
    return this.gateway.dispatchTo(guildId, event, data);
  }

  channelMessages(channelId: string): FakeMessage[] {
    return [...this.state.messages.values()].filter((m) => m.channelId === channelId);
  }

  deleteMessage(id: string): void {
    const msg = this.state.messages.get(id);
    if (!msg) throw new Error(`fake discord: no message ${id}`);
    msg.deleted = true;
  }

  async deleteChannel(channelId: string): Promise<void> {
    const found = this.state.channel(channelId);
    if (!found) throw new Error(`fake discord: no channel ${channelId}`);
    found.guild.channels.splice(found.guild.channels.indexOf(found.channel), 1);
    for (const m of this.state.messages.values()) if (m.channelId === channelId) m.deleted = true;
    await this.gateway.dispatchTo(found.guild.id, 'CHANNEL_DELETE', channelObject(found.guild, found.channel));
  }

  async removeBotFromGuild(guildId: string, o: { botOffline?: boolean } = {}): Promise<void> {
    if (!this.state.guild(guildId)) throw new Error(`fake discord: no guild ${guildId}`);
    this.state.leftGuilds.add(guildId);
    // A bot that is not connected hears nothing: it learns it only from its next READY.
    if (!o.botOffline) await this.gateway.dispatchTo(guildId, 'GUILD_DELETE', { id: guildId });
  }

  rateLimitNext(opts: RequestMatcher & { retryAfterS?: number }): void {
    this.state.injections.push({
      ...(opts.method ? { method: opts.method } : {}),
      pathPrefix: opts.pathPrefix,
      remaining: opts.count,
      status: 429,
      body: undefined,
      ...(opts.retryAfterS === undefined ? {} : { retryAfterS: opts.retryAfterS }),
    });
  }

  failNext(opts: RequestMatcher & { status: number; body?: unknown }): void {
    this.state.injections.push({
      ...(opts.method ? { method: opts.method } : {}),
      pathPrefix: opts.pathPrefix,
      remaining: opts.count,
      status: opts.status,
      body: opts.body,
    });
  }

  stopInjecting(): void {
    this.state.injections.length = 0;
  }

  slowNext(opts: RequestMatcher & { ms: number }): void {
    this.state.slowAnswers.push({
      ...(opts.method ? { method: opts.method } : {}),
      pathPrefix: opts.pathPrefix,
      remaining: opts.count,
      ms: opts.ms,
    });
  }

  registeredCommands(guildId?: string): any[] {
    return this.state.commands.get(guildId ?? 'global') ?? [];
  }

  waitForAsync<T>(fn: () => Promise<T | undefined | null | false>, timeoutMs = 10_000): Promise<T> {
    return waitForAsync(fn, timeoutMs);
  }

  waitFor<T>(fn: () => T | undefined | null | false, timeoutMs = 10_000): Promise<T> {
    return waitFor(fn, timeoutMs);
  }

  gatewayConnections(): number {
    return this.gateway.connectionCount();
  }

  disconnectAll(code = 4000): void {
    this.gateway.disconnectAll(code);
  }

  async close(): Promise<void> {
    await this.gateway.close();
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Starts a fake Discord on 127.0.0.1 with a random port. */
export async function startFakeDiscord(options: FakeDiscordOptions = {}): Promise<FakeDiscord> {
  const fake = new FakeDiscordServer(options);
  await fake.listen();
  return fake;
}
