/**
 * Mutable state shared by the REST, CDN and Gateway halves of the fake.
 * @module
 */
import { DEFAULTS, defaultGuilds } from './ids.js';
import type {
  FakeCallback,
  FakeChannel,
  FakeDiscordOptions,
  FakeGuild,
  FakeInteraction,
  FakeMessage,
  FakeUser,
  Recorded,
} from './types.js';

/** Options with defaults applied. */
export interface ResolvedOptions {
  appId: string;
  token: string;
  botUsername: string;
  guilds: FakeGuild[];
  shards: number;
  maxConcurrency: number;
  heartbeatIntervalMs: number;
  interactionTokenLifetimeMs: number;
  ackDeadlineMs: number;
  answerDelayMs: number;
}

/** Internal view of an interaction (the public object plus routing facts). */
export interface InteractionRecord extends FakeInteraction {
  guildId?: string;
  channelId: string;
  user: FakeUser;
  sizeLimit: number;
  expiresAt: number;
  /** Id of the `@original` message once there is one. */
  originalId?: string;
  /** The app deleted `@original` itself (a user deleting it does not count). */
  originalDeletedByApp?: boolean;
  /** The message a component / modal interaction came from. */
  sourceMessageId?: string;
  callbackWaiters: ((cb: FakeCallback) => void)[];
}

/** A queued fault for the next matching requests. */
export interface Injection {
  method?: string;
  pathPrefix: string;
  remaining: number;
  status: number;
  body: unknown;
  retryAfterS?: number;
}

/** A CDN entry: bytes or a redirect. */
export type CdnEntry = { data: Buffer; contentType?: string } | { redirect: string };

/** Everything the fake knows. */
export class FakeState {
  readonly opts: ResolvedOptions;
  readonly botUser: FakeUser;
  baseUrl = '';
  readonly requests: Recorded[] = [];
  readonly unhandled: Recorded[] = [];
  readonly cdnRequests: Recorded[] = [];
  readonly messages = new Map<string, FakeMessage>();
  readonly interactions = new Map<string, InteractionRecord>();
  readonly interactionsByToken = new Map<string, InteractionRecord>();
  /** Registered commands by scope: `'global'` or a guild id. */
  readonly commands = new Map<string, any[]>();
  readonly cdn = new Map<string, CdnEntry>();
  readonly injections: Injection[] = [];
  /** Answers held back: the request takes effect on arrival, its answer leaves `ms` later. */
  readonly slowAnswers: { method?: string; pathPrefix: string; remaining: number; ms: number }[] = [];
  /** `channelId:nonce` → message id and creation time (for `enforce_nonce`). */
  readonly nonces = new Map<string, { messageId: string; at: number }>();
  readonly identifies: any[] = [];
  /** Guilds the bot was removed from (kicked, or the guild deleted): bot-token routes there answer 403 50001. */
  readonly leftGuilds = new Set<string>();

  constructor(options: FakeDiscordOptions) {
    this.opts = {
      appId: options.appId ?? DEFAULTS.appId,
      token: options.token ?? DEFAULTS.token,
      botUsername: options.botUsername ?? 'fakebot',
      guilds: options.guilds ?? defaultGuilds(),
      shards: options.shards ?? 1,
      maxConcurrency: options.maxConcurrency ?? 16,
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? 1000,
      interactionTokenLifetimeMs: options.interactionTokenLifetimeMs ?? 15 * 60 * 1000,
      ackDeadlineMs: options.ackDeadlineMs ?? 3000,
      answerDelayMs: options.answerDelayMs ?? 0,
    };
    this.botUser = { id: this.opts.appId, username: this.opts.botUsername, globalName: null, bot: true };
  }

  guild(id: string | undefined): FakeGuild | undefined {
    return this.opts.guilds.find((g) => g.id === id);
  }

  /** Whether the bot is still a member of the guild. */
  inGuild(id: string): boolean {
    return !this.leftGuilds.has(id);
  }

  /** Finds a guild channel and its guild. */
  channel(id: string): { guild: FakeGuild; channel: FakeChannel } | undefined {
    for (const guild of this.opts.guilds) {
      const channel = guild.channels.find((c) => c.id === id);
      if (channel) return { guild, channel };
    }
    return undefined;
  }

  /** Builds an absolute URL on this server. */
  url(path: string): string {
    return `${this.baseUrl}${path}`;
  }
}

/** Polls `fn` every 10 ms until it returns a truthy value. */
export async function waitFor<T>(fn: () => T | undefined | null | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = fn();
    // A pending Promise is truthy: such a wait would return at once, without waiting for anything.
    if (value && typeof (value as { then?: unknown }).then === 'function')
      throw new Error('fake discord: waitFor got a Promise; an async condition goes to waitForAsync');
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`fake discord: waitFor timed out after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Like {@link waitFor}, for a condition that must ask something asynchronous (Postgres, Redis). */
export async function waitForAsync<T>(fn: () => Promise<T | undefined | null | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`fake discord: waitForAsync timed out after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
