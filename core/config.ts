import { z } from 'zod';
import { BACKEND_FAMILIES, type BackendFamily, BOX_FAMILIES } from './backend-families.js';
import { ATTACHMENT_LIMITS } from './image-limits.js';

/**
 * Configuration, parsed once at boot by each process's main.ts.
 * The worker's schema has no Discord token and no database URL: it must not be able to hold them.
 */

const csv = (s: string) =>
  s
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p.length > 0);

const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' });
const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));
const optionalUrl = optionalString.pipe(httpUrl.optional());
/**
 * A blank number (`DEFAULT_DAILY_IMAGES=`, as .env.example writes unset settings) is unset, so it
 * takes its default: coerced, '' would be 0, a limit of 0 for every member or a price of $0.
 */
const blankIsUnset = <T extends z.ZodType>(schema: T) =>
  z.preprocess((v) => (typeof v === 'string' && v.trim() === '' ? undefined : v), schema);
const intIn = (min: number, max: number, dflt: number) =>
  blankIsUnset(
    z.coerce
      .number({ error: 'must be a whole number' })
      .int({ error: 'must be a whole number' })
      .min(min, { error: `must be at least ${min}` })
      .max(max, { error: `must be at most ${max}` })
      .default(dflt),
  );
const optionalInt = (min: number, max: number) =>
  optionalString
    .transform((v) => (v === undefined ? undefined : Number(v)))
    .pipe(
      z
        .number({ error: 'must be a whole number' })
        .int({ error: 'must be a whole number' })
        .min(min, { error: `must be at least ${min}` })
        .max(max, { error: `must be at most ${max}` })
        .optional(),
    );
const usd = (dflt: number) =>
  blankIsUnset(z.coerce.number({ error: 'must be a number of dollars' }).min(0, { error: 'must be 0 or more' }).default(dflt));
const snowflake = z.string().regex(/^\d{17,20}$/, { error: 'must be a Discord id (17-20 digits)' });

const sharedShape = {
  /** Redis for BullMQ queues, progress and result images in transit. */
  REDIS_URL: z
    .string()
    .default('redis://localhost:6379')
    .pipe(z.url({ protocol: /^rediss?$/, error: 'must be a redis:// or rediss:// URL' })),
  /** Key prefix for every queue and result key; lets several deployments (or tests) share one Redis. */
  QUEUE_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_:-]{1,64}$/, { error: 'must be 1-64 of letters, digits, _ : -' })
    .default('imagebot'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** How long result images and previews stay in Redis waiting for delivery. */
  RESULT_TTL_SECONDS: intIn(60, 7 * 86400, 86400),
  /**
   * Lock on a running job, renewed every half of it; a worker that dies is noticed within about this
   * long plus STALLED_CHECK_MS. Long enough that a busy event loop never looks like a dead worker
   * (a second worker would run the job again, paid calls included); CPU work runs on threads anyway.
   */
  JOB_LOCK_MS: intIn(1000, 600_000, 30_000),
  STALLED_CHECK_MS: intIn(500, 600_000, 5000),
  /** Threads for image work (grid, paste-back, upload fitting, classification) off the event loop; 0 = one per core but one (1-4). */
  IMAGE_THREADS: intIn(0, 64, 0),
  /** Port for /healthz, /readyz and /metrics; 0 turns the server off. */
  HTTP_PORT: intIn(0, 65535, 0),
  /**
   * JSON file of presets (core/presets.ts), validated at start. The bot reads it for the names,
   * styles and default steps members see; the worker for each backend's model, steps, guidance and sampler.
   */
  PRESETS_FILE: optionalString,
  /**
   * A job whose expected wait for the GPU box(es) is longer than this runs on the first cloud
   * provider the guild's budget allows; 0 = only when the box fails. The bot applies it too: a
   * guild's job goes to the guild's own box only while the wait there is within it.
   */
  OVERFLOW_AFTER_S: intIn(0, 86_400, 60),
  /**
   * Guilds whose jobs the operator's own GPU boxes may serve (the shared queue): `*` (default) for
   * every guild, or a comma list of guild ids; another guild's jobs there run in the cloud only,
   * within its budget (its own linked boxes still serve it first).
   */
  SHARED_BOX_GUILDS: z
    .string()
    .default('*')
    .transform((v) => (v.trim() === '*' ? ('*' as const) : csv(v)))
    .pipe(z.union([z.literal('*'), z.array(snowflake)], { error: 'must be * or comma-separated guild ids' })),
};

export const botConfigSchema = z
  .object({
    ...sharedShape,
    DISCORD_TOKEN: z.string({ error: 'is required' }).min(1, { error: 'is required' }),
    DISCORD_APP_ID: snowflake,
    DISCORD_DEV_GUILD_ID: optionalString.pipe(snowflake.optional()),
    DISCORD_API_URL: z.string().default('https://discord.com/api').pipe(httpUrl),
    DISCORD_ATTACHMENT_ORIGINS: z
      .string()
      .default('https://cdn.discordapp.com,https://media.discordapp.net')
      .transform(csv)
      .pipe(z.array(httpUrl.transform((u) => new URL(u).origin)).min(1, { error: 'needs at least one origin' })),
    DATABASE_URL: z
      .string()
      .default('postgresql://postgres:postgres@localhost:5432/imagebot')
      .pipe(z.url({ protocol: /^postgres(ql)?$/, error: 'must be a postgresql:// URL' })),
    DEFAULT_DAILY_IMAGES: intIn(0, 100_000, 25),
    DEFAULT_MONTHLY_BUDGET_USD: usd(5),
    /** Jobs one member may have queued or running at once. */
    MAX_QUEUED_PER_USER: intIn(1, 100, 3),
    /**
     * Most admissions that may wait for the database at once (core/admission-load.ts); beyond it a
     * member is told at once that the bot is busy. Each also waits at most 5 s, which is what sheds
     * in an ordinary overload. The default only bites in a burst far larger than the bot could admit
     * in 5 s anyway; a lower one refuses members a slot would have reached in time (bench/overhead:
     * with 500, a 1000-interaction burst, all arriving within a second, had 650 refused).
     */
    ADMISSION_MAX_WAITING: intIn(0, 100_000, 2000),
    /** Largest attachment /inpaint will download, and most pixels it will decode. */
    ATTACHMENT_MAX_BYTES: intIn(1024, 100 * 1024 * 1024, ATTACHMENT_LIMITS.maxBytes),
    ATTACHMENT_MAX_PIXELS: intIn(1024, 100_000_000, ATTACHMENT_LIMITS.maxPixels),
    /**
     * Gateway sharding across bot processes: each process names its shard ids out of the total, e.g.
     * DISCORD_SHARD_COUNT=2 with DISCORD_SHARD_IDS=0 in one process and 1 in another. Unset: one shard.
     */
    DISCORD_SHARD_COUNT: optionalString
      .transform((v) => (v === undefined ? undefined : Number(v)))
      .pipe(z.number({ error: 'must be a whole number' }).int().min(1).max(4096).optional()),
    DISCORD_SHARD_IDS: optionalString
      .transform((v) => (v === undefined ? undefined : csv(v).map(Number)))
      .pipe(z.array(z.number().int().min(0), { error: 'must be comma-separated shard numbers' }).optional()),
    /** Prompts, parameters and message references of jobs older than this many days are erased (ledger amounts stay). */
    RETENTION_DAYS: intIn(1, 3650, 90),
    /** Roles whose members may use /admin besides those with Manage Server or Administrator. */
    MODERATOR_ROLE_IDS: z.string().default('').transform(csv).pipe(z.array(snowflake)),
    /**
     * Linking servers' own GPU boxes (/admin gpu): the Redis address their workers reach, without
     * credentials (each link gets its own Redis user). Unset: linking is off.
     */
    LINK_REDIS_URL: optionalString.pipe(
      z
        .url({ protocol: /^rediss?$/, error: 'must be a redis:// or rediss:// URL' })
        // It is shown to moderators in /admin gpu link's reply.
        .refine((u) => !/^[a-z]+:\/\/[^/]*@/i.test(u), { error: 'must not hold credentials (each linked box gets its own)' })
        .optional(),
    ),
  })
  .superRefine((c, ctx) => {
    // Shard ids only mean something out of a total: without it the process would run as the only shard.
    if (c.DISCORD_SHARD_IDS === undefined) return;
    if (c.DISCORD_SHARD_COUNT === undefined)
      ctx.addIssue({ code: 'custom', path: ['DISCORD_SHARD_IDS'], message: 'needs DISCORD_SHARD_COUNT (the total number of shards)' });
    else if (c.DISCORD_SHARD_IDS.some((id) => id >= c.DISCORD_SHARD_COUNT!))
      ctx.addIssue({
        code: 'custom',
        path: ['DISCORD_SHARD_IDS'],
        message: `must be below DISCORD_SHARD_COUNT (${c.DISCORD_SHARD_COUNT})`,
      });
  });
export type BotConfig = z.infer<typeof botConfigSchema>;

export const workerConfigSchema = z
  .object({
    ...sharedShape,
    BACKENDS: optionalString
      .transform((v) => (v === undefined ? undefined : csv(v)))
      .pipe(z.array(z.enum(BACKEND_FAMILIES, { error: `names must be from ${BACKEND_FAMILIES.join(', ')}` })).optional()),
    A1111_URL: optionalString.transform((v) => (v === undefined ? [] : csv(v))).pipe(z.array(httpUrl)),
    A1111_AUTH: optionalString.pipe(
      z
        .string()
        .regex(/^[^:]+:.+$/, { error: 'must be user:pass' })
        .optional(),
    ),
    /** Checkpoint requested from AUTOMATIC1111 per job (override_settings); unset keeps the box's loaded model. */
    A1111_CHECKPOINT: optionalString,
    /** Upscaler the Upscale button uses on AUTOMATIC1111 (`/sdapi/v1/extra-single-image`), by its name in /sdapi/v1/upscalers. */
    A1111_UPSCALER: optionalString.transform((v) => v ?? 'R-ESRGAN 4x+'),
    COMFYUI_URL: optionalString.transform((v) => (v === undefined ? [] : csv(v))).pipe(z.array(httpUrl)),
    COMFYUI_CHECKPOINT: z.string().default('sd_xl_base_1.0.safetensors'),
    REPLICATE_API_TOKEN: optionalString,
    REPLICATE_API_URL: z.string().default('https://api.replicate.com/v1').pipe(httpUrl),
    /** Where Replicate serves output files; a prediction naming any other origin (or redirecting to one) is refused. */
    REPLICATE_OUTPUT_ORIGINS: z
      .string()
      .default('https://replicate.delivery,https://pbxt.replicate.delivery')
      .transform(csv)
      .pipe(z.array(httpUrl.transform((u) => new URL(u).origin)).min(1, { error: 'needs at least one origin' })),
    HF_TOKEN: optionalString,
    HF_ENDPOINT_URL: optionalUrl,
    HF_MODEL: optionalString,
    /**
     * Where output files a Hugging Face answer names by URL may be fetched from (a provider's CDN),
     * redirects included; anything else is refused unfetched. Empty: only images in the answer itself.
     */
    HF_OUTPUT_ORIGINS: z
      .string()
      .default('https://v3.fal.media,https://v3b.fal.media,https://fal.media,https://replicate.delivery,https://pbxt.replicate.delivery')
      .transform(csv)
      .pipe(z.array(httpUrl.transform((u) => new URL(u).origin))),
    /**
     * The HF endpoint's handler does image-to-image: an image with `strength`, and `mask_image` for
     * inpaint. Enables inpaint, Vary (img2img) and Upscale (an img2img pass) on Hugging Face;
     * otherwise those jobs skip it.
     */
    HF_INPAINT: z
      .enum(['true', 'false'], { error: 'must be true or false' })
      .default('false')
      .transform((v) => v === 'true'),
    /** Version id of stability-ai/sdxl on Replicate (64 hex). */
    REPLICATE_SDXL_VERSION: optionalString.pipe(
      z
        .string()
        .regex(/^[0-9a-f]{64}$/, { error: 'must be a 64-hex version id' })
        .optional(),
    ),
    /**
     * Jobs one worker process holds at once: running on a box, waiting for one (each box still runs
     * one job at a time, whatever the number of workers) or running in the cloud. Default: one per
     * GPU box, plus 8 when a cloud backend is configured (so jobs can wait for the box, and overflow,
     * while others run), or 4 for a cloud-only worker.
     */
    WORKER_CONCURRENCY: optionalInt(1, 256),
    /**
     * Runs this worker as the given guild's own worker: everything it touches in Redis lives under
     * `<QUEUE_PREFIX>:g:<id>` (the guild's queue, results, box leases, status reports), and it uses its
     * GPU boxes only: a guild's worker never spends the operator's cloud keys (they are ignored).
     */
    WORKER_GUILD_ID: optionalString.pipe(snowflake.optional()),
    /** A backend that answers but reports no progress for this long is treated as hung and the job moves on. */
    PROGRESS_TIMEOUT_MS: intIn(500, 600_000, 10_000),
    /** A GPU box whose cheap endpoint (A1111 /sdapi/v1/progress, ComfyUI /queue) does not answer for this long while a job runs is dead. */
    BOX_DEAD_AFTER_MS: intIn(200, 60_000, 2000),
    /** How long a box's lease lasts without renewal: a killed worker's box is free again after this. */
    BOX_LEASE_MS: intIn(500, 60_000, 5000),
    /** Price model (dollars). GPU boxes: per GPU-hour of wall time; 0 = the owner's own hardware. */
    A1111_USD_PER_GPU_HOUR: usd(0),
    COMFYUI_USD_PER_GPU_HOUR: usd(0),
    /** Replicate community models (stability-ai/sdxl) bill predict_time; default is an L40S's price per second. */
    REPLICATE_USD_PER_SECOND: usd(0.000975),
    /** Replicate official models (FLUX schnell) bill per output image. */
    REPLICATE_FLUX_USD_PER_IMAGE: usd(0.003),
    /** Hugging Face: per image (Inference Providers) and/or a share of a dedicated endpoint's hourly price. */
    HF_USD_PER_REQUEST: usd(0),
    HF_USD_PER_ENDPOINT_HOUR: usd(0),
    /** Consecutive failures that open a backend's circuit; a health probe closes it again. */
    CIRCUIT_FAILURES: intIn(1, 100, 3),
    /** How often an open circuit's backend is probed. */
    HEALTH_PROBE_MS: intIn(100, 600_000, 5000),
    /**
     * Classify every image with nsfwjs before it is stored for posting (on by default): `on` uses
     * TensorFlow.js's WebAssembly backend, falling back to its pure-JS CPU backend; `cpu` uses the
     * CPU backend only (about a second per image; for hosts where the WebAssembly backend misbehaves).
     */
    NSFW_CLASSIFIER: z.enum(['on', 'cpu', 'off'], { error: 'must be on, cpu or off' }).default('on'),
    /** nsfwScore (Porn + Hentai + ½ Sexy) at or above which an image counts as NSFW. */
    NSFW_THRESHOLD: blankIsUnset(z.coerce.number({ error: 'must be a number' }).min(0.05).max(1).default(0.7)),
    /** How often a GPU box is asked for progress and a preview. */
    PROGRESS_POLL_MS: intIn(50, 60_000, 500),
    /** One-time token from `/admin gpu link`, traded at start for this box's own Redis credentials. */
    WORKER_JOIN_TOKEN: optionalString,
    /** Where a linked worker keeps the credentials it was given (mode 0600) and reads them on later starts. */
    WORKER_CREDENTIALS_FILE: z.string().default('./data/worker-link.json'),
  })
  .transform((c, ctx) => {
    const configured: BackendFamily[] = [];
    if (c.A1111_URL.length > 0) configured.push('a1111');
    if (c.COMFYUI_URL.length > 0) configured.push('comfyui');
    if (c.REPLICATE_API_TOKEN) configured.push('replicate');
    if (c.HF_TOKEN || c.HF_ENDPOINT_URL) configured.push('huggingface');
    // A guild's worker runs its boxes only; cloud keys in its environment are dropped (main.ts says so).
    const ownBoxes = c.WORKER_GUILD_ID !== undefined;
    if (ownBoxes) configured.splice(0, configured.length, ...configured.filter((b) => BOX_FAMILIES.includes(b)));
    const backends = (c.BACKENDS ?? configured).filter((b) => !ownBoxes || BOX_FAMILIES.includes(b));
    for (const b of backends) {
      if (!configured.includes(b)) {
        ctx.addIssue({ code: 'custom', path: ['BACKENDS'], message: `names ${b}, which is not configured` });
      }
    }
    if (backends.length === 0 && ownBoxes) {
      ctx.addIssue({
        code: 'custom',
        path: ['BACKENDS'],
        message: "a guild's own worker runs its GPU boxes only: set A1111_URL or COMFYUI_URL",
      });
    } else if (backends.length === 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['BACKENDS'],
        message: 'no backend is configured: set A1111_URL, COMFYUI_URL, REPLICATE_API_TOKEN or HF_TOKEN',
      });
    }
    const boxes = (backends.includes('a1111') ? c.A1111_URL.length : 0) + (backends.includes('comfyui') ? c.COMFYUI_URL.length : 0);
    const cloud = backends.some((b) => !BOX_FAMILIES.includes(b));
    const concurrency = c.WORKER_CONCURRENCY ?? (boxes === 0 ? 4 : boxes + (cloud ? 8 : 0));
    return {
      ...c,
      BACKENDS: backends,
      WORKER_CONCURRENCY: concurrency,
      /** The key space this worker serves: QUEUE_PREFIX, or the guild's own under it. */
      QUEUE_PREFIX: ownBoxes ? guildSpace(c.QUEUE_PREFIX, c.WORKER_GUILD_ID!) : c.QUEUE_PREFIX,
      /** The QUEUE_PREFIX as given, before a guild's worker narrowed it. */
      BASE_QUEUE_PREFIX: c.QUEUE_PREFIX,
      IGNORED_CLOUD_KEYS: ownBoxes && (c.REPLICATE_API_TOKEN !== undefined || c.HF_TOKEN !== undefined || c.HF_ENDPOINT_URL !== undefined),
    };
  });
export type WorkerConfig = z.infer<typeof workerConfigSchema>;

/** A guild's own key space under QUEUE_PREFIX: its queue, results, box leases and status reports. */
export function guildSpace(queuePrefix: string, guildId: string): string {
  return `${queuePrefix}:g:${guildId}`;
}

/** Where a key under QUEUE_PREFIX (a job's input image) is copied to in a guild's key space, for its own worker to read. */
export function keyInGuildSpace(key: string, queuePrefix: string, guildId: string): string {
  return key.startsWith(`${queuePrefix}:`) ? `${guildSpace(queuePrefix, guildId)}:${key.slice(queuePrefix.length + 1)}` : key;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly lines: string[]) {
    super(lines.join('; '));
  }
}

/** Parses the environment; on failure names each variable and the rule it broke, never its value. */
export function loadConfig<S extends z.ZodType>(schema: S, env: Record<string, string | undefined>): z.infer<S> {
  const result = schema.safeParse(env);
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => {
    const name = issue.path.length > 0 ? String(issue.path[0]) : 'environment';
    const msg = issue.code === 'invalid_type' && issue.input === undefined ? 'is required' : issue.message;
    return `${name} ${msg}`;
  });
  throw new ConfigError([...new Set(lines)]);
}
