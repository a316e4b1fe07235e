import sharp, { type Metadata } from 'sharp';
import { OUTPUT_LIMITS } from '../../core/image-limits.js';
import { checkOutputImage } from '../../core/io/image-sniff.js';
import type { BackendErrors } from './backend.js';

/** How an output image must match the request: exactly its size, fitted to it (a model that takes only an aspect ratio), or any size. */
export type OutputFit = { width: number; height: number; fit: 'exact' | 'cover' } | { fit: 'any' };

/**
 * A backend's output image as the contract wants it: it decodes, it has the size asked for, and
 * it is PNG (converted when a box saves JPEG or WebP). Every backend's output passes here, so the
 * rules for provider output are written once: within {@link OUTPUT_LIMITS} (core/image-limits.ts)
 * by its size and header, before anything decodes it. `n` is the image's 1-based number, for the message.
 */
export async function outputPng(errors: BackendErrors, bytes: Buffer, n: number, want: OutputFit): Promise<Buffer> {
  const checked = checkOutputImage(bytes, n);
  if ('refused' in checked) throw errors.badResponse(checked.refused);
  const { header } = checked;
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
