import { z } from 'zod';
import { BACKEND_FAMILIES, type BackendFamily } from './backend-families.js';

/**
 * Named generation presets (`/imagine preset:`). A preset is a look (style words, negative) plus,
 * per backend family, what it takes to get that look there: the model (a checkpoint on a GPU box, a
 * Replicate model and version, a Hugging Face model), steps, guidance and sampler. A family without
 * an entry does not run the preset at all, so a job never lands on a backend that would make
 * something else. Built-in presets can be changed, removed or joined by the owner's PRESETS_FILE.
 */

/** How a Replicate model takes its input: cog-sdxl's (`stability-ai/sdxl` and SDXL fine-tunes) or FLUX's. */
export const REPLICATE_INPUTS = ['sdxl', 'flux'] as const;

const name = z.string().trim().min(1).max(200);

/** One family's settings for a preset; every field is optional and falls back to the preset's or the backend's own. */
export const familySettingsSchema = z
  .object({
    /** A1111 and ComfyUI: the checkpoint (A1111: as /sdapi/v1/sd-models lists it; ComfyUI: a file in models/checkpoints). */
    checkpoint: name.optional(),
    /**
     * A1111 and ComfyUI: the preset only runs on a box whose owner named a checkpoint for it (few-step
     * models such as SDXL Lightning or Turbo need their own weights; base SDXL at 4 steps is noise).
     */
    needsCheckpoint: z.boolean().optional(),
    /** Replicate: `owner/name`; Hugging Face: a Hub model id. */
    model: z
      .string()
      .trim()
      .regex(/^[\w.-]+\/[\w.-]+$/, { error: 'must be owner/name' })
      .optional(),
    /** Replicate: the 64-hex version of a community model; without one the official model's route is used. */
    version: z
      .string()
      .regex(/^[0-9a-f]{64}$/, { error: 'must be a 64-hex version id' })
      .optional(),
    /** Replicate: the model's input set (default flux for black-forest-labs/flux-*, else sdxl). */
    inputs: z.enum(REPLICATE_INPUTS).optional(),
    /** Replicate official models are billed per image: this price (default REPLICATE_FLUX_USD_PER_IMAGE). */
    usdPerImage: z.number().min(0).max(10).optional(),
    steps: z.number().int().min(1).max(150).optional(),
    /** Most steps the model is made for (few-step models): a member's `steps:` is capped there. */
    maxSteps: z.number().int().min(1).max(150).optional(),
    guidance: z.number().min(0).max(30).optional(),
    /** A1111: a sampler name from /sdapi/v1/samplers; ComfyUI: a KSampler sampler_name; Replicate sdxl: its `scheduler` input. */
    sampler: z.string().trim().min(1).max(64).optional(),
    /** A1111: a schedule type from /sdapi/v1/schedulers; ComfyUI: a KSampler scheduler. */
    scheduler: z.string().trim().min(1).max(64).optional(),
  })
  .strict();
export type FamilySettings = z.infer<typeof familySettingsSchema>;

const familyEntries = Object.fromEntries(BACKEND_FAMILIES.map((f) => [f, familySettingsSchema.nullable().optional()])) as Record<
  BackendFamily,
  z.ZodOptional<z.ZodNullable<typeof familySettingsSchema>>
>;

/** One preset in PRESETS_FILE. `null` for a family takes the preset off that family; `null` for a preset removes it. */
const filePresetSchema = z
  .object({
    label: z.string().trim().min(1).max(100).optional(),
    /** Shown and used wherever the family entry names none. */
    steps: z.number().int().min(1).max(150).optional(),
    guidance: z.number().min(0).max(30).optional(),
    /** Appended to the member's prompt (comma-separated style words). */
    style: z.string().max(500).optional(),
    negative: z.string().max(500).optional(),
    ...familyEntries,
  })
  .strict();

const PRESET_ID = /^[a-z0-9][a-z0-9_-]{0,31}$/;

/** PRESETS_FILE: preset id → changes to the built-in of that name, a new preset, or null to remove one. */
export const presetsFileSchema = z.record(
  z.string().regex(PRESET_ID, { error: 'preset names are 1-32 of a-z, 0-9, _ and -, starting with a letter or digit' }),
  filePresetSchema.nullable(),
);
export type PresetsFile = z.infer<typeof presetsFileSchema>;

export interface Preset {
  readonly id: string;
  readonly label: string;
  readonly steps: number;
  readonly guidance: number;
  readonly style?: string;
  readonly negative?: string;
  /** Where the preset runs; a family absent here does not run it. */
  readonly families: Readonly<Partial<Record<BackendFamily, FamilySettings>>>;
}

/** SDXL on every family: the box's default checkpoint, Replicate's stability-ai/sdxl, the configured HF model. */
const SDXL_EVERYWHERE = { a1111: {}, comfyui: {}, replicate: { model: 'stability-ai/sdxl' }, huggingface: {} } as const;

const BUILTIN: readonly Preset[] = [
  { id: 'sdxl', label: 'SDXL (balanced)', steps: 30, guidance: 7, families: SDXL_EVERYWHERE },
  {
    id: 'photo',
    label: 'Photographic',
    steps: 35,
    guidance: 6,
    style: 'photograph, 35mm, natural light, detailed',
    negative: 'cartoon, illustration, painting',
    families: SDXL_EVERYWHERE,
  },
  {
    id: 'anime',
    label: 'Anime illustration',
    steps: 28,
    guidance: 7.5,
    style: 'anime style, clean line art, vibrant colors',
    negative: 'photo, realistic',
    families: SDXL_EVERYWHERE,
  },
  {
    // SDXL Lightning's 4-step recipe (Euler, SGM Uniform, next to no CFG) on a box that has the weights; FLUX schnell on Replicate.
    id: 'fast',
    label: 'Fast draft (4 steps)',
    steps: 4,
    guidance: 1,
    families: {
      a1111: { needsCheckpoint: true, steps: 4, maxSteps: 8, guidance: 1, sampler: 'Euler', scheduler: 'SGM Uniform' },
      comfyui: { needsCheckpoint: true, steps: 4, maxSteps: 8, guidance: 1, sampler: 'euler', scheduler: 'sgm_uniform' },
      replicate: { model: 'black-forest-labs/flux-schnell', inputs: 'flux', steps: 4, maxSteps: 4 },
    },
  },
  {
    // SDXL Turbo (adversarial distillation): 1-4 steps without CFG.
    id: 'turbo',
    label: 'Turbo (SDXL Turbo, 4 steps)',
    steps: 4,
    guidance: 1,
    families: {
      a1111: { needsCheckpoint: true, steps: 4, maxSteps: 4, guidance: 1, sampler: 'Euler a', scheduler: 'Automatic' },
      comfyui: { needsCheckpoint: true, steps: 4, maxSteps: 4, guidance: 1, sampler: 'euler_ancestral', scheduler: 'normal' },
      huggingface: { model: 'stabilityai/sdxl-turbo', steps: 4, maxSteps: 4, guidance: 0 },
    },
  },
];

const DEFAULT_PRESET_ID = 'sdxl';

/** The presets in force: the built-ins with the owner's file applied. */
export class PresetCatalog {
  private readonly byId: ReadonlyMap<string, Preset>;

  constructor(readonly list: readonly Preset[]) {
    this.byId = new Map(list.map((p) => [p.id, p]));
  }

  /** The preset by id; no id means the default. */
  find(id: string | undefined): Preset | undefined {
    return this.byId.get(id ?? DEFAULT_PRESET_ID);
  }

  /**
   * Autocomplete choices for a partial query (Discord allows 25 at most); `offered`, when given,
   * limits them to the presets some live backend can run.
   */
  choices(query: string, offered?: ReadonlySet<string>): { name: string; value: string }[] {
    const q = query.trim().toLowerCase();
    return this.list
      .filter((p) => !offered || offered.has(p.id))
      .filter((p) => q === '' || p.id.includes(q) || p.label.toLowerCase().includes(q))
      .slice(0, 25)
      .map((p) => ({ name: p.label.slice(0, 100), value: p.id }));
  }
}

export const BUILTIN_PRESETS = new PresetCatalog(BUILTIN);

/** The built-ins with PRESETS_FILE applied: fields replace, family entries merge field by field, null removes. */
export function buildCatalog(file: PresetsFile | undefined): PresetCatalog {
  if (!file) return BUILTIN_PRESETS;
  const out = new Map(BUILTIN.map((p) => [p.id, p]));
  for (const [id, change] of Object.entries(file)) {
    if (change === null) {
      out.delete(id);
      continue;
    }
    const base: Preset = out.get(id) ?? { id, label: id, steps: 30, guidance: 7, families: {} };
    const families: Partial<Record<BackendFamily, FamilySettings>> = { ...base.families };
    for (const f of BACKEND_FAMILIES) {
      const entry = change[f];
      if (entry === null) delete families[f];
      else if (entry !== undefined) families[f] = { ...base.families[f], ...entry };
    }
    out.set(id, {
      id,
      label: change.label ?? base.label,
      steps: change.steps ?? base.steps,
      guidance: change.guidance ?? base.guidance,
      ...((change.style ?? base.style) !== undefined ? { style: change.style ?? base.style } : {}),
      ...((change.negative ?? base.negative) !== undefined ? { negative: change.negative ?? base.negative } : {}),
      families,
    });
  }
  return new PresetCatalog([...out.values()]);
}

/** One problem per line, naming the preset and field, for a PRESETS_FILE that does not validate. */
export function describePresetsFileIssues(err: z.ZodError): string[] {
  return err.issues.map((i) => {
    const where = i.path.length > 0 ? i.path.map(String).join('.') : '(top level)';
    const msg =
      i.code === 'unrecognized_keys'
        ? `unknown field(s) ${i.keys.map((k) => `"${k}"`).join(', ')}`
        : i.code === 'invalid_key'
          ? (i.issues[0]?.message ?? i.message)
          : i.message;
    return `PRESETS_FILE ${where}: ${msg}`;
  });
}

/** What a job runs with on one family: the preset's settings there, the member's steps and guidance on top. */
export interface PresetRun {
  readonly settings: FamilySettings;
  readonly steps: number;
  readonly guidance: number;
}

/**
 * A preset on one family, or null when it does not run there. The member's `steps:` and
 * `guidance:` win over the preset's (capped at the model's maxSteps, which few-step models need).
 */
export function presetRun(preset: Preset, family: BackendFamily, member: { steps?: number; guidance?: number }): PresetRun | null {
  const settings = preset.families[family];
  if (!settings) return null;
  const steps = member.steps ?? settings.steps ?? preset.steps;
  return {
    settings,
    steps: settings.maxSteps ? Math.min(steps, settings.maxSteps) : steps,
    guidance: member.guidance ?? settings.guidance ?? preset.guidance,
  };
}

/** The Replicate input set of a model (FLUX for black-forest-labs/flux-*, unless the entry says). */
export function replicateInputs(s: FamilySettings): (typeof REPLICATE_INPUTS)[number] {
  return s.inputs ?? (/^black-forest-labs\/flux/.test(s.model ?? '') ? 'flux' : 'sdxl');
}
