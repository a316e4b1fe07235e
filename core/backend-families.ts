/**
 * The kinds of backend the worker can drive, in their default fallback order. BACKENDS names them,
 * prices are set per family, and the worker's registry must build each one (a missing entry does
 * not compile).
 */
export const BACKEND_FAMILIES = ['a1111', 'comfyui', 'replicate', 'huggingface'] as const;
export type BackendFamily = (typeof BACKEND_FAMILIES)[number];

/** GPU boxes the owner runs: one job at a time each, shared by every worker through a lease. */
export const BOX_FAMILIES: readonly BackendFamily[] = ['a1111', 'comfyui'];

export function isBoxFamily(family: BackendFamily): boolean {
  return BOX_FAMILIES.includes(family);
}

/**
 * Providers that bill the owner per use: the only spend a guild's monthly budget counts (a box's
 * GPU-hour price is the owner's own hardware, reported as cost but never budgeted).
 */
export const PAID_FAMILIES: readonly BackendFamily[] = ['replicate', 'huggingface'];

const LABELS = {
  a1111: 'the GPU box',
  comfyui: 'the GPU box',
  replicate: 'Replicate',
  huggingface: 'Hugging Face',
} as const satisfies Record<BackendFamily, string>;

/** How members read a backend's name (`replicate` → Replicate, `a1111#2` → the GPU box). */
export function backendLabel(backendId: string): string {
  const family = backendId.split('#')[0] as BackendFamily;
  return LABELS[family] ?? backendId;
}
