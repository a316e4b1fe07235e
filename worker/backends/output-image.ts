import sharp, { type Metadata } from 'sharp';
import { ATTACHMENT_LIMITS } from '../../core/config.js';
import { type ImageFormat, sniffImage } from '../../core/io/image-sniff.js';
import type { BackendErrors } from './backend.js';

/**
 * What a provider or a box may hand back, checked before anything decodes it: provider output is
 * hostile input like an upload. Results are at most about 2048² (an upscale's cap), so the pixel cap
 * is the one uploads have; the byte cap leaves room for a 16 MP PNG.
 */
export const OUTPUT_LIMITS = {
  maxBytes: 64 * 1024 * 1024,
  maxPixels: ATTACHMENT_LIMITS.maxPixels,
  formats: ['png', 'jpeg', 'webp'] as readonly ImageFormat[],
} as const;

/** How an output image must match the request: exactly its size, fitted to it (a model that takes only an aspect ratio), or any size. */
export type OutputFit = { width: number; height: number; fit: 'exact' | 'cover' } | { fit: 'any' };

/**
 * A backend's output image as the contract wants it: it decodes, it has the size asked for, and
 * it is PNG (converted when a box saves JPEG or WebP). Every backend's output passes here, so the
 * rules for provider output are written once: at most {@link OUTPUT_LIMITS} bytes, PNG, JPEG or
 * WebP by its magic bytes, and at most its pixel cap by its header, before anything decodes it (a
 * tiny file can declare gigapixels). `n` is the image's 1-based number, for the message.
 */
export async function outputPng(errors: BackendErrors, bytes: Buffer, n: number, want: OutputFit): Promise<Buffer> {
  if (bytes.length > OUTPUT_LIMITS.maxBytes)
    throw errors.badResponse(
      `image ${n} is ${Math.round(bytes.length / 1024 / 1024)} MB, over the ${OUTPUT_LIMITS.maxBytes / 1024 / 1024} MB cap`,
    );
  const header = sniffImage(bytes);
  if (!header || !OUTPUT_LIMITS.formats.includes(header.format))
    throw errors.badResponse(`image ${n} is not a PNG, JPEG or WebP${header ? ` (${header.format})` : ''}`);
  if (header.width * header.height > OUTPUT_LIMITS.maxPixels)
    throw errors.badResponse(`image ${n} declares ${header.width}×${header.height}, over the ${OUTPUT_LIMITS.maxPixels / 1e6} MP cap`);
  // The common case, a PNG of the right size, is settled from its header without a trip to libvips
  // (which reads no more than the header either to answer metadata()).
  if (
    header.format === 'png' &&
    (want.fit === 'any' || (want.fit === 'exact' && header.width === want.width && header.height === want.height))
  )
    return bytes;
  let meta: Metadata;
  try {
    meta = await sharp(bytes, { limitInputPixels: OUTPUT_LIMITS.maxPixels }).metadata();
  } catch (err) {
    throw errors.badResponse(`image ${n} does not decode`, err);
  }
  if (want.fit === 'cover')
    return sharp(bytes, { limitInputPixels: OUTPUT_LIMITS.maxPixels }).resize(want.width, want.height, { fit: 'cover' }).png().toBuffer();
  if (want.fit === 'exact' && (meta.width !== want.width || meta.height !== want.height)) {
    throw errors.badResponse(`returned ${meta.width}×${meta.height}, asked for ${want.width}×${want.height}`);
  }
  if (meta.format === 'png') return bytes;
  try {
    return await sharp(bytes, { limitInputPixels: OUTPUT_LIMITS.maxPixels }).png().toBuffer();
  } catch (err) {
    throw errors.badResponse(`image ${n} (${meta.format}) does not convert to PNG`, err);
  }
}
