import type {
  APIActionRowComponent,
  APIButtonComponent,
  APIEmbed,
  ButtonInteraction,
  ChatInputCommandInteraction,
  ModalSubmitInteraction,
} from 'discord.js';
import type { Logger } from 'pino';
import type { BotConfig } from '../core/config.js';
import type { GenerationRequest } from '../core/generation.js';
import type {
  Actor,
  BackendLatency,
  ForgottenJob,
  GuildSettings,
  GuildStats,
  InteractionRef,
  MemberQuota,
  PrivacyStore,
  StoredJob,
} from '../core/ports.js';
import type { PresetCatalog } from '../core/presets.js';

/*
 * What every handler is handed: everything a slash command, button or form may use, as narrow
 * services the bot implements (bot/main.ts wires them). The handlers import nothing of bot/;
 * dependency-cruiser checks it.
 */

/** Interactions that can start a generation: the slash commands, the result buttons, the Edit modal. */
export type GenerationInteraction = ChatInputCommandInteraction | ButtonInteraction | ModalSubmitInteraction;

/** A job that passed policy and quota: its row exists and its images are reserved, not yet queued. */
export interface Admitted {
  jobId: string;
  actor: Actor;
  ref: InteractionRef;
  request: GenerationRequest;
  budgetLeftUsd: number;
  /** The guild's month as admission saw it (the worker's reservations start from it). */
  budget?: { month: string; limitUsd: number; spentUsd: number };
  nsfwAllowed: boolean;
  /** Images this member made in the last 24 hours before this job; fewer means an earlier turn in the queue. */
  usedBefore: number;
}

/** A message as the bot sends it to Discord (API field names). */
export interface ReplyBody {
  content: string;
  embeds: APIEmbed[];
  components: APIActionRowComponent<APIButtonComponent>[];
  allowed_mentions: { parse: []; users?: string[] };
}

/**
 * Sends the interaction's first answer, a message (bot/first-answer.ts); resolves with the reply's
 * message id when Discord gives it. `'deferred'`: the router had to defer meanwhile (the message was
 * late) and nothing was sent; the message is then an edit of that reply, in turn with the others.
 */
export type FirstAnswer = (body: ReplyBody) => Promise<string | undefined | 'deferred'>;

/** Starting a generation: admit (policy, then quota and the job row in one statement), then enqueue. */
export interface GenerationService {
  /**
   * Throws a UserError saying why when policy or quota refuses; nothing is reserved then, and
   * `inputs` never runs. Once admitted, `inputs` fetches and stores the job's input images and
   * returns the request as it finally is (an /inpaint's size comes from its image); if it throws,
   * the job is refunded and the error rethrown.
   */
  admit(
    interaction: GenerationInteraction,
    request: GenerationRequest,
    parentJobId?: string,
    inputs?: (request: GenerationRequest) => Promise<GenerationRequest>,
  ): Promise<Admitted>;
  /**
   * Queues an admitted job and shows its place in the queue. If the queue is unreachable the
   * reservation is refunded before the member hears about it (a UserError). Queueing may start
   * before Discord has answered the deferral: nothing edits the reply until `acknowledged` settles.
   * With `answer` nothing has been sent yet: the place is the interaction's first answer.
   */
  enqueue(admitted: Admitted, log: Logger, acknowledged?: Promise<void>, answer?: FirstAnswer): Promise<void>;
}

/** Redis keys of an /inpaint's prepared images (Vary and Upscale use `image` alone). */
export interface InputKeys {
  image: string;
  mask: string;
  original: string;
  maskFull: string;
}

/**
 * Input images: fetched as hostile input (allowed origins, byte and pixel caps), prepared off the
 * main thread and parked in Redis for the worker, only for a job already admitted: the request
 * names fresh keys at admission and the images are fetched into them afterwards.
 */
export interface InputService {
  /** Fresh keys for one job's input images; nothing is fetched or stored. */
  keys(): InputKeys;
  /** Refuses (a UserError) an attachment whose declared origin, size or pixels the download would refuse; contacts nothing. */
  precheck(attachment: { url: string; size: number; width?: number | null; height?: number | null }): void;
  /** /inpaint's image and optional mask at SDXL's size under `keys`, plus what the worker pastes the result back with; returns that size. */
  inpaint(imageUrl: string, maskUrl: string | null, keys: InputKeys): Promise<{ width: number; height: number }>;
  /** An image posted by the bot, read back from its message (Vary, Upscale), stored under `key`. */
  postedImage(url: string, key: string): Promise<void>;
}

/** Jobs as the buttons and /quota see them. */
export interface JobDesk {
  /** A job as stored; a forgotten one (/forget, retention) without its prompt, parameters or message ids. */
  get(jobId: string): Promise<StoredJob | ForgottenJob | null>;
  /**
   * `cancelled` when no worker held it (refunded), `cancelling` when a worker is interrupting it,
   * `finished` when its own outcome was recorded first and stands.
   */
  cancel(jobId: string): Promise<'cancelled' | 'cancelling' | 'finished'>;
  /** Places in the queue (1 = next) of the jobs that wait; absent for the others. */
  positionsOf(jobIds: readonly string[]): Promise<Map<string, number>>;
  /** What /quota shows a member. */
  memberQuota(guildId: string, userId: string, monthStart: string): Promise<MemberQuota>;
}

/** What `/admin backends` shows. */
export interface BackendsReport {
  /** Every worker's latest report per backend (core/io/backend-status.ts). */
  statuses: readonly {
    backend: string;
    at: number;
    healthy: boolean;
    detail: string;
    circuit: string;
    inFlight: number;
    price: string;
    /** Presets the backend runs (absent from older workers). */
    presets?: Readonly<Record<string, number>>;
  }[];
  latency: BackendLatency[];
  counts: Record<string, number>;
}

export interface Reports {
  guild(guildId: string, since: Date): Promise<GuildStats>;
  /** The stats as a PNG chart. */
  chart(stats: GuildStats): Promise<Buffer>;
  backends(since: Date): Promise<BackendsReport>;
}

/** The presets members may pick: the catalog, narrowed to those a live backend runs. */
export interface PresetService {
  readonly catalog: PresetCatalog;
  /** Autocomplete choices for a partial query, only presets some live backend runs. */
  choices(query: string): Promise<{ name: string; value: string }[]>;
  /** Throws a UserError naming what is available when no live backend runs the preset. */
  check(presetId: string): Promise<void>;
}

/** A new join token for a guild's GPU box, and what the box's worker needs besides it. */
export interface GpuJoin {
  linkId: string;
  /** Shown once, to the moderator who asked; only its hash is stored. */
  token: string;
  expiresAt: Date;
  /** The Redis address the box's worker reaches (LINK_REDIS_URL, no credentials). */
  redisUrl: string;
  /** The deployment's QUEUE_PREFIX when it is not the default (the worker must use the same). */
  queuePrefix?: string;
}

/** One of the guild's GPU links, as `/admin gpu status` shows it. */
export interface GpuLinkView {
  id: string;
  createdBy: string;
  createdAt: Date;
  /** waiting: the box has not traded its token yet; expired: it did not in time; online/offline: joined, and its worker reports or not. */
  state: 'waiting' | 'expired' | 'online' | 'offline';
  tokenExpiresAt: Date;
  joinedAt: Date | null;
  /** Running a job now. */
  busy: boolean;
  /** The box backends its worker reports, with their health. */
  boxes: { backend: string; healthy: boolean }[];
  model?: string;
  jobsToday: number;
  /** When its worker last reported (ms). */
  lastSeenAt?: number;
  lastError: string | null;
}

/** The guild's own GPU boxes (/admin gpu): linking, status, revocation. */
export interface GpuLinks {
  /** Linking is off unless the operator set LINK_REDIS_URL. */
  readonly enabled: boolean;
  link(guildId: string, actorId: string): Promise<GpuJoin>;
  status(guildId: string): Promise<GpuLinkView[]>;
  /** Revokes at once (the link's Redis user is deleted, its connections closed); false when the guild has no such active link. */
  unlink(guildId: string, actorId: string, linkId: string): Promise<boolean>;
  /** Revokes the box's access at once and issues a new join token for the same link; null when there is no such active link. */
  rotate(guildId: string, actorId: string, linkId: string): Promise<GpuJoin | null>;
}

/** Everything a handler is handed, built once per interaction by bot/router.ts. */
export interface CommandContext {
  /** Bound to the interaction (and, for components, the action and job). */
  log: Logger;
  now: () => Date;
  config: Pick<BotConfig, 'MODERATOR_ROLE_IDS' | 'DEFAULT_DAILY_IMAGES' | 'RETENTION_DAYS'>;
  generation: GenerationService;
  inputs: InputService;
  jobs: JobDesk;
  settings: GuildSettings;
  /** A member's data in a guild: what /forget would erase, and erasing it. */
  privacy: Pick<PrivacyStore, 'preview' | 'forget'>;
  /** Posts to the guild's log channel, if it has one; never throws. */
  notices: { post(guildId: string, content: string): Promise<boolean> };
  reports: Reports;
  presets: PresetService;
  gpu: GpuLinks;
}
