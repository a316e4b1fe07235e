import { OUTPUT_LIMITS } from '../image-limits.js';

export interface UploadFile {
  name: string;
  data: Buffer;
  contentType: string;
}

/**
 * Fits one image (PNG, or WebP for the grid) under the channel's per-file upload limit: the PNG when it fits, else
 * high-quality WebP, else JPEG, else smaller WebP renditions, so Discord never answers 413.
 */
export async function fitForUpload(png: Buffer, limitBytes: number, baseName: string, format: 'png' | 'webp' = 'png'): Promise<UploadFile> {
  if (png.length <= limitBytes) return { name: `${baseName}.${format}`, data: png, contentType: `image/${format}` };
  // Loaded only when an image is too large: most results fit, and the bot need not hold libvips.
  const { default: load } = await import('sharp');
  // Result images are output: libvips holds them to its pixel cap too, whatever checked them before.
  const sharp = (input: Buffer) => load(input, { limitInputPixels: OUTPUT_LIMITS.maxPixels });
  const webp = await sharp(png).webp({ quality: 92 }).toBuffer();
  if (webp.length <= limitBytes) return { name: `${baseName}.webp`, data: webp, contentType: 'image/webp' };
  const jpeg = await sharp(png).jpeg({ quality: 88, mozjpeg: true }).toBuffer();
  if (jpeg.length <= limitBytes) return { name: `${baseName}.jpg`, data: jpeg, contentType: 'image/jpeg' };
  const { width = 1024 } = await sharp(png).metadata();
  let smallest =
    webp.length < jpeg.length ? { data: webp, ext: 'webp', type: 'image/webp' } : { data: jpeg, ext: 'jpg', type: 'image/jpeg' };
  for (let scale = 0.8; scale > 0.1; scale *= 0.8) {
    const data = await sharp(png)
      .resize(Math.max(64, Math.round(width * scale)))
      .webp({ quality: 85 })
      .toBuffer();
    smallest = { data, ext: 'webp', type: 'image/webp' };
    if (data.length <= limitBytes) break;
  }
  return { name: `${baseName}.${smallest.ext}`, data: smallest.data, contentType: smallest.type };
}
