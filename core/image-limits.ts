/**
 * Caps on the images anything here decodes, in one place and without dependencies, so the image
 * threads that decode can hold to them without loading the configuration.
 */

/**
 * The largest input image the bot downloads and the most pixels anything decodes (ATTACHMENT_MAX_BYTES
 * and ATTACHMENT_MAX_PIXELS default to these; the worker holds a posted image to the same pixel cap).
 */
export const ATTACHMENT_LIMITS = { maxBytes: 10 * 1024 * 1024, maxPixels: 16_000_000 } as const;

/**
 * What a provider or a box may hand back, checked before anything decodes it: provider output is
 * hostile input like an upload. Results are at most about 2048² (an upscale's cap), so the pixel cap
 * is the one uploads have; the byte cap leaves room for a 16 MP PNG. The worker holds backends'
 * output to it, and the bot a worker's result (a guild's own worker is not ours).
 */
export const OUTPUT_LIMITS = {
  maxBytes: 64 * 1024 * 1024,
  maxPixels: ATTACHMENT_LIMITS.maxPixels,
  formats: ['png', 'jpeg', 'webp'],
} as const;
