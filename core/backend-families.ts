/**
 * The kinds of backend the worker can drive, in their default fallback order. BACKENDS names them,
 * prices are set per family, and the worker's registry must build each one (a missing entry does
 * not compile).
 */
export const BACKEND_FAMILIES = ['a1111', 'comfyui', 'replicate', 'huggingface'] as const;
export type BackendFamily = (typeof BACKEND_FAMILIES)[number];
