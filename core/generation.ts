import { z } from 'zod';
import { UserError } from './errors.js';
import { BUILTIN_PRESETS, type Preset, type PresetCatalog, replicateInputs } from './presets.js';

/** Limits on member input; the slash-command definitions advertise the same numbers. */
export const LIMITS = {
  promptMax: 1500,
  negativeMax: 1000,
  countMax: 4,
  stepsMin: 1,
  stepsMax: 60,
  guidanceMin: 1,
  guidanceMax: 20,
  seedMax: 4_294_967_295,
  strengthMin: 0.05,
  strengthMax: 1,
} as const;

export const ASPECTS = ['1:1', '4:3', '3:4', '3:2', '2:3', '16:9', '9:16'] as const;
export type Aspect = (typeof ASPECTS)[number];

const TARGET_PIXELS = 1024 * 1024;

/** Width and height for an aspect ratio: multiples of 64 whose area is near one megapixel (SDXL's native size). */
export function aspectToSize(aspect: Aspect): { width: number; height: number } {
  const [w, h] = aspect.split(':').map(Number) as [number, number];
  const ratio = w / h;
  const width = Math.round(Math.sqrt(TARGET_PIXELS * ratio) / 64) * 64;
  const height = Math.round(Math.sqrt(TARGET_PIXELS / ratio) / 64) * 64;
  return { width, height };
}

/** Raw `/imagine` options as Discord delivers them (absent options are undefined). */
const imagineOptionsSchema = z.object({
  prompt: z.string(),
  negative: z.string().optional(),
  aspect: z.enum(ASPECTS).optional(),
  count: z.number().int().min(1).max(LIMITS.countMax).optional(),
  seed: z.number().int().min(0).max(LIMITS.seedMax).optional(),
  steps: z.number().int().min(LIMITS.stepsMin).max(LIMITS.stepsMax).optional(),
  guidance: z.number().min(LIMITS.guidanceMin).max(LIMITS.guidanceMax).optional(),
  preset: z.string().optional(),
});

/** The kinds of job: each is a BullMQ job name with one handler in the worker, and a kind in Postgres. */
export const JOB_KINDS = ['txt2img', 'inpaint', 'img2img', 'upscale'] as const;
export type JobKind = (typeof JOB_KINDS)[number];

/**
 * How far each kind may move from its input image (denoising strength) when the request names
 * none: inpaint's default for /inpaint, Vary's img2img pass, the img2img pass that stands in for an
 * upscaler; text-to-image starts from noise.
 */
export const STRENGTH = { txt2img: 1, inpaint: 0.75, img2img: 0.6, upscale: 0.3 } as const satisfies Record<JobKind, number>;

/** The denoising strength a backend applies to this request. */
export function strengthOf(r: { kind: JobKind; strength?: number | undefined }): number {
  return r.strength ?? STRENGTH[r.kind];
}

/** What a backend is asked to make: fully resolved, no defaults left to guess. */

export const generationRequestSchema = z.object({
  /**
   * txt2img and inpaint come from the slash commands; img2img (the Vary button) redraws a posted
   * image at `strength`; upscale makes it `width` × `height` with the backend's upscaler, or with a
   * low-strength img2img pass at that size where the backend has none.
   */
  kind: z.enum(JOB_KINDS),
  prompt: z.string().min(1),
  negative: z.string(),
  width: z.number().int().positive(),
  height: z.number().int().positive(),
  count: z.number().int().min(1).max(LIMITS.countMax),
  /** Seed of the first image; image i uses seed + i. */
  seed: z.number().int().min(0).max(LIMITS.seedMax),
  steps: z.number().int().min(1),
  guidance: z.number(),
  preset: z.string(),
  /** Replicate's model when the preset's own entry is unknown to a worker (older payloads): FLUX schnell or SDXL. */
  replicateModel: z.enum(['sdxl', 'flux-schnell']),
  /**
   * The steps and guidance the member asked for; absent means the preset's, which differ per
   * backend (a Lightning checkpoint on the box, FLUX on Replicate). `steps`/`guidance` above are
   * what the preset shows by default.
   */
  memberSteps: z.number().int().min(LIMITS.stepsMin).max(LIMITS.stepsMax).optional(),
  memberGuidance: z.number().min(LIMITS.guidanceMin).max(LIMITS.guidanceMax).optional(),
  /** Inpaint, img2img and upscale: 0.05-1, how far the result may move from the input image. */
  strength: z.number().min(LIMITS.strengthMin).max(LIMITS.strengthMax).optional(),
  /**
   * Redis keys of the input images. Inpaint: the model-size image and mask, and the upright
   * original and its feathered full-size mask used to paste the result back. img2img and upscale:
   * `image` only, the posted image as fetched from Discord.
   */
  inputKeys: z
    .object({ image: z.string(), mask: z.string().optional(), original: z.string().optional(), maskFull: z.string().optional() })
    .optional(),
  /** The member's own prompt and negative prompt, before a preset's style was added (the Edit modal shows these). */
  memberPrompt: z.string().optional(),
  memberNegative: z.string().optional(),
  /** The job whose image an img2img or upscale job starts from, and which of its images (0-based). */
  source: z.object({ jobId: z.string(), index: z.number().int().min(0).max(3) }).optional(),
});
export type GenerationRequest = z.infer<typeof generationRequestSchema>;

/** The Redis keys of a request's input images (none for txt2img). */
export function inputKeyList(request: GenerationRequest): string[] {
  return Object.values(request.inputKeys ?? {}).filter((k): k is string => typeof k === 'string');
}

function randomSeed(): number {
  return Math.floor(Math.random() * LIMITS.seedMax);
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const field = String(issue.path[0] ?? 'option');
  switch (issue.code) {
    case 'too_big':
      return `\`${field}\` must be at most ${String(issue.maximum)}.`;
    case 'too_small':
      return `\`${field}\` must be at least ${String(issue.minimum)}.`;
    case 'invalid_value':
      return `\`${field}\` must be one of: ${issue.values.join(', ')}.`;
    default:
      return `\`${field}\` is not valid.`;
  }
}

/**
 * The member's prompt and negative prompt, checked (not empty, within the limits) and combined
 * with the preset's style words; the member's own words are kept for the Edit form.
 * Shared by `/imagine` and the Edit modal so both refuse the same text the same way.
 */
export function promptText(
  promptIn: string,
  negativeRaw: string | undefined,
  preset: Pick<Preset, 'style' | 'negative'> | undefined,
): Pick<GenerationRequest, 'prompt' | 'negative' | 'memberPrompt' | 'memberNegative'> {
  const prompt = promptIn.trim();
  if (prompt.length === 0) throw new UserError('invalid_option', 'The prompt is empty.');
  if (prompt.length > LIMITS.promptMax) {
    throw new UserError(
      'prompt_too_long',
      `The prompt is ${prompt.length} characters; the limit is ${LIMITS.promptMax}. Shorten it and try again.`,
    );
  }
  const negative = (negativeRaw ?? '').trim();
  if (negative.length > LIMITS.negativeMax) {
    throw new UserError('prompt_too_long', `The negative prompt is ${negative.length} characters; the limit is ${LIMITS.negativeMax}.`);
  }
  return {
    prompt: preset?.style ? `${prompt}, ${preset.style}` : prompt,
    negative: [negative, preset?.negative].filter(Boolean).join(', '),
    memberPrompt: prompt,
    ...(negative ? { memberNegative: negative } : {}),
  };
}

/**
 * Turns `/imagine` options into a GenerationRequest, or throws a UserError naming the bad option.
 * Pure and synchronous, so the bot can run it before acknowledging and answer ephemerally.
 */
export function parseImagineOptions(
  raw: unknown,
  rng: () => number = randomSeed,
  presets: PresetCatalog = BUILTIN_PRESETS,
): GenerationRequest {
  const parsed = imagineOptionsSchema.safeParse(raw);
  if (!parsed.success) {
    throw new UserError('invalid_option', describeIssue(parsed.error.issues[0]!));
  }
  const o = parsed.data;
  const preset = presets.find(o.preset);
  if (!preset) throw new UserError('invalid_option', `There is no preset called \`${o.preset ?? ''}\`.`);
  const text = promptText(o.prompt, o.negative, preset);
  const { width, height } = aspectToSize(o.aspect ?? '1:1');
  return {
    kind: 'txt2img',
    ...text,
    width,
    height,
    count: o.count ?? 1,
    seed: o.seed ?? rng(),
    steps: o.steps ?? preset.steps,
    guidance: o.guidance ?? preset.guidance,
    preset: preset.id,
    replicateModel: preset.families.replicate && replicateInputs(preset.families.replicate) === 'flux' ? 'flux-schnell' : 'sdxl',
    ...(o.steps !== undefined ? { memberSteps: o.steps } : {}),
    ...(o.guidance !== undefined ? { memberGuidance: o.guidance } : {}),
  };
}

/** Raw `/inpaint` options besides the attachments. */
const inpaintOptionsSchema = z.object({
  prompt: z.string(),
  negative: z.string().optional(),
  strength: z.number().min(LIMITS.strengthMin).max(LIMITS.strengthMax).optional(),
  seed: z.number().int().min(0).max(LIMITS.seedMax).optional(),
  count: z.number().int().min(1).max(LIMITS.countMax).optional(),
});

/** Validates `/inpaint` text options (pure, before acknowledging); size and inputs come after the images are read. */
export function parseInpaintOptions(
  raw: unknown,
  rng: () => number = randomSeed,
): Omit<GenerationRequest, 'width' | 'height' | 'inputKeys'> {
  const parsed = inpaintOptionsSchema.safeParse(raw);
  if (!parsed.success) throw new UserError('invalid_option', describeIssue(parsed.error.issues[0]!));
  const base = parseImagineOptions(
    { prompt: parsed.data.prompt, negative: parsed.data.negative, seed: parsed.data.seed, count: parsed.data.count },
    rng,
  );
  const { width: _w, height: _h, ...rest } = base;
  return { ...rest, kind: 'inpaint', strength: parsed.data.strength ?? STRENGTH.inpaint };
}

/** Queue payload, version 1. Carries no secrets and no Discord token. */
export const jobPayloadSchema = z.object({
  v: z.literal(1),
  jobId: z.string().min(1),
  guildId: z.string().nullable(),
  request: generationRequestSchema,
  /** false when the guild's monthly budget for paid providers is spent. */
  paidAllowed: z.boolean(),
  /** Dollars left in the guild's monthly budget for paid providers at enqueue time. */
  budgetLeftUsd: z.number().nonnegative().optional(),
  /**
   * The guild's month as admission saw it: the budget and its paid spend. A worker reserves each
   * paid attempt against the month's shared reservations (core/io/budget-reservations.ts), and
   * seeds them from this only if they are gone. Absent (older payloads, re-enqueues): free backends only.
   */
  budget: z
    .object({ month: z.string().regex(/^\d{4}-\d{2}$/), limitUsd: z.number().nonnegative(), spentUsd: z.number().nonnegative() })
    .optional(),
  /** false when an image the classifier flags must not be posted (strict mode, or not an age-restricted channel). */
  nsfwAllowed: z.boolean().default(false),
  /**
   * false when the operator's GPU boxes may not serve this guild (SHARED_BOX_GUILDS): on the shared
   * queue the job then runs in the cloud only, within the guild's budget.
   */
  boxesAllowed: z.boolean().optional(),
  /**
   * On a guild's own queue only: the bot's seal (bot/jobs/seal.ts) over the payload and the member's
   * usage before it, so the bot moves to the shared queue only jobs it queued there. Workers ignore it.
   */
  seal: z.object({ usedBefore: z.number().int().nonnegative(), mac: z.string() }).optional(),
});
export type JobPayload = z.infer<typeof jobPayloadSchema>;

/**
 * The queue payload of an admitted job, built here for the first enqueue and for any re-enqueue
 * (a queue entry lost to a crash), so both always agree on what a worker is told. `budgetLeftUsd`
 * 0 keeps the job on free backends.
 */
export function toJobPayload(
  job: { jobId: string; guildId: string; request: GenerationRequest },
  grants: { budgetLeftUsd: number; nsfwAllowed: boolean; budget?: JobPayload['budget'] },
): JobPayload {
  const paidAllowed = grants.budgetLeftUsd > 0 && grants.budget !== undefined;
  return {
    v: 1,
    jobId: job.jobId,
    guildId: job.guildId,
    request: job.request,
    paidAllowed,
    budgetLeftUsd: grants.budgetLeftUsd,
    ...(paidAllowed ? { budget: grants.budget } : {}),
    nsfwAllowed: grants.nsfwAllowed,
  };
}

export const attemptSchema = z.object({
  backend: z.string(),
  outcome: z.enum(['succeeded', 'failed', 'skipped', 'cancelled']),
  seconds: z.number().nonnegative(),
  costUsd: z.number().nonnegative(),
  /** An attempt on the guild's own box: its worth at the guild's GPU-hour price (not the operator's cost, not in the budget). */
  ownUsd: z.number().nonnegative().optional(),
  errorKind: z.string().optional(),
  detail: z.string().optional(),
  /** The provider's id of the paid run (a Replicate prediction): a later try of the job sees it is booked. */
  ref: z.string().max(200).optional(),
});
export type Attempt = z.infer<typeof attemptSchema>;

/**
 * The model a job ran on: a checkpoint and its hash as the GPU box reports them, a Replicate model
 * and version, a Hugging Face model or endpoint.
 */
export const modelLineageSchema = z.object({
  name: z.string().min(1).max(200),
  /** A checkpoint's hash (A1111's short hash) or a Replicate version id. */
  version: z.string().max(100).optional(),
});
export type ModelLineage = z.infer<typeof modelLineageSchema>;

/** What the worker returns to BullMQ; images themselves travel through the result store. */
export const jobResultSchema = z.object({
  backend: z.string(),
  seed: z.number().int(),
  width: z.number().int(),
  height: z.number().int(),
  imageKeys: z.array(z.string()).min(1),
  /** Several images: the numbered grid, made by the worker (whose CPU scales out) for the bot to post. */
  gridKey: z.string().optional(),
  runMs: z.number().nonnegative(),
  costUsd: z.number().nonnegative(),
  attempts: z.array(attemptSchema),
  /** What made the images, as the backend reported it (lineage; absent on results of older workers). */
  model: modelLineageSchema.optional(),
  /** Sampler (and schedule) the backend ran, when it has such a thing. */
  sampler: z.string().max(100).optional(),
  /** Steps the backend ran, which a preset's model may cap below the request's (absent on results of older workers). */
  steps: z.number().int().min(1).optional(),
  /** Guidance the backend ran; null when its model takes none (FLUX schnell). */
  guidance: z.number().min(0).nullable().optional(),
  /** Why it ran where it ran, when that was not the GPU box it was meant for. */
  route: z.object({ reason: z.enum(['overflow', 'failover']), backend: z.string() }).optional(),
});
export type JobResult = z.infer<typeof jobResultSchema>;

export type ParsedJobResult = { success: true; data: JobResult } | { success: false; issues: unknown };

/** A worker's return value (JSON text from QueueEvents, an object from getJob), parsed once per job. */
export function parseJobResult(returnvalue: unknown): ParsedJobResult {
  try {
    const parsed = jobResultSchema.safeParse(typeof returnvalue === 'string' ? JSON.parse(returnvalue) : returnvalue);
    return parsed.success ? { success: true, data: parsed.data } : { success: false, issues: parsed.error.issues };
  } catch (err) {
    return { success: false, issues: String(err) };
  }
}

/** Progress reported through BullMQ while a job runs. */
export const jobProgressSchema = z.object({
  backend: z.string(),
  step: z.number().int().nonnegative(),
  total: z.number().int().nonnegative(),
  /** 0..1 */
  fraction: z.number().min(0).max(1),
  previewKey: z.string().optional(),
  /** The job waits for a GPU box: how many jobs are ahead of it in the boxes' line, and when it should start. */
  waiting: z
    .object({ ahead: z.number().int().nonnegative(), startLowMs: z.number().optional(), startHighMs: z.number().optional() })
    .optional(),
  /** A paid provider this job may still go to (overflow or failover) and about what it would cost. */
  fallback: z.object({ backend: z.string(), usd: z.number().nonnegative(), overflowAfterS: z.number().nonnegative() }).optional(),
  /** Why the job runs where it runs, when that is not the box it was meant for. */
  route: z.object({ reason: z.enum(['overflow', 'failover']), backend: z.string(), usd: z.number().nonnegative().optional() }).optional(),
});
export type JobProgress = z.infer<typeof jobProgressSchema>;
