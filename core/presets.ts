/**
 * Named generation presets offered by `/imagine preset:` autocomplete.
 * A preset sets defaults (steps, guidance, style words) and, for cloud backends, which model to use.
 */
export interface Preset {
  readonly id: string;
  readonly label: string;
  readonly steps: number;
  readonly guidance: number;
  /** Appended to the prompt (comma-separated style words). */
  readonly style?: string;
  readonly negative?: string;
  /** Replicate model family used when the job lands on Replicate. */
  readonly replicateModel: 'sdxl' | 'flux-schnell';
}

const PRESETS: readonly Preset[] = [
  { id: 'sdxl', label: 'SDXL (balanced)', steps: 30, guidance: 7, replicateModel: 'sdxl' },
  {
    id: 'photo',
    label: 'Photographic',
    steps: 35,
    guidance: 6,
    style: 'photograph, 35mm, natural light, detailed',
    negative: 'cartoon, illustration, painting',
    replicateModel: 'sdxl',
  },
  {
    id: 'anime',
    label: 'Anime illustration',
    steps: 28,
    guidance: 7.5,
    style: 'anime style, clean line art, vibrant colors',
    negative: 'photo, realistic',
    replicateModel: 'sdxl',
  },
  { id: 'fast', label: 'Fast draft (FLUX schnell on Replicate)', steps: 4, guidance: 1, replicateModel: 'flux-schnell' },
];

export const DEFAULT_PRESET_ID = 'sdxl';

export function findPreset(id: string | undefined): Preset | undefined {
  return PRESETS.find((p) => p.id === (id ?? DEFAULT_PRESET_ID));
}

/** Autocomplete choices for a partial query (Discord allows 25 at most). */
export function presetChoices(query: string): { name: string; value: string }[] {
  const q = query.trim().toLowerCase();
  return PRESETS.filter((p) => q === '' || p.id.includes(q) || p.label.toLowerCase().includes(q))
    .slice(0, 25)
    .map((p) => ({ name: p.label, value: p.id }));
}
