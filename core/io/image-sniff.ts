import { OUTPUT_LIMITS } from '../image-limits.js';

/** Image formats the bot accepts, identified by magic bytes only. */
export type ImageFormat = 'png' | 'jpeg' | 'webp' | 'gif';

/** What the header of an image declares, read without decoding any pixels. */
export interface ImageHeader {
  format: ImageFormat;
  width: number;
  height: number;
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function ascii(bytes: Buffer, offset: number, text: string): boolean {
  return bytes.length >= offset + text.length && bytes.toString('latin1', offset, offset + text.length) === text;
}

/**
 * The format announced by the first bytes (12 are enough), or null when they match none we accept.
 * Says nothing about whether the rest of the file is sound: see {@link sniffImage}.
 */
export function detectFormat(bytes: Buffer): ImageFormat | null {
  if (bytes.length >= 8 && bytes.subarray(0, 8).equals(PNG_SIGNATURE)) return 'png';
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  if (ascii(bytes, 0, 'RIFF') && ascii(bytes, 8, 'WEBP')) return 'webp';
  if (ascii(bytes, 0, 'GIF87a') || ascii(bytes, 0, 'GIF89a')) return 'gif';
  return null;
}

function pngSize(b: Buffer): [number, number] | null {
  // IHDR must be the first chunk: length 13, then width and height as big-endian u32.
  if (b.length < 24 || b.readUInt32BE(8) !== 13 || !ascii(b, 12, 'IHDR')) return null;
  return [b.readUInt32BE(16), b.readUInt32BE(20)];
}

function isStartOfFrame(marker: number): boolean {
  // SOF0-SOF15, except DHT (C4), JPG (C8) and DAC (CC), which share the range.
  return marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
}

function jpegSize(b: Buffer): [number, number] | null {
  let i = 2;
  while (i + 4 <= b.length) {
    if (b[i] !== 0xff) return null;
    let marker = b[i + 1]!;
    while (marker === 0xff && i + 2 < b.length) {
      i += 1; // fill bytes before a marker
      marker = b[i + 1]!;
    }
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd8)) {
      i += 2; // standalone markers carry no length
      continue;
    }
    // Entropy-coded data or the end came before any frame header: the size is unknowable here.
    if (marker === 0xda || marker === 0xd9 || i + 4 > b.length) return null;
    const length = b.readUInt16BE(i + 2);
    if (length < 2) return null;
    if (isStartOfFrame(marker)) {
      if (i + 9 > b.length || length < 7) return null;
      return [b.readUInt16BE(i + 7), b.readUInt16BE(i + 5)];
    }
    i += 2 + length;
  }
  return null;
}

function webpSize(b: Buffer): [number, number] | null {
  if (b.length < 30) return null;
  if (ascii(b, 12, 'VP8 ')) {
    // Key frame: 3-byte frame tag, start code 9d 01 2a, then 14-bit width and height.
    if (b[23] !== 0x9d || b[24] !== 0x01 || b[25] !== 0x2a) return null;
    return [b.readUInt16LE(26) & 0x3fff, b.readUInt16LE(28) & 0x3fff];
  }
  if (ascii(b, 12, 'VP8L')) {
    if (b[20] !== 0x2f) return null;
    const bits = b.readUInt32LE(21);
    return [(bits & 0x3fff) + 1, ((bits >>> 14) & 0x3fff) + 1];
  }
  if (ascii(b, 12, 'VP8X')) return [b.readUIntLE(24, 3) + 1, b.readUIntLE(27, 3) + 1];
  return null;
}

function gifSize(b: Buffer): [number, number] | null {
  if (b.length < 10) return null;
  return [b.readUInt16LE(6), b.readUInt16LE(8)];
}

/**
 * Format and declared dimensions of an image, from its header alone (no decoding, no allocation
 * proportional to the image). Null when the bytes are not a PNG, JPEG, WebP or GIF, or when the
 * header is truncated or malformed. Pure.
 */
export function sniffImage(bytes: Buffer): ImageHeader | null {
  const format = detectFormat(bytes);
  if (!format) return null;
  const size =
    format === 'png' ? pngSize(bytes) : format === 'jpeg' ? jpegSize(bytes) : format === 'webp' ? webpSize(bytes) : gifSize(bytes);
  if (!size) return null;
  const [width, height] = size;
  if (width <= 0 || height <= 0) return null;
  return { format, width, height };
}

/**
 * An output image checked against {@link OUTPUT_LIMITS} from its size and header alone (a tiny file
 * can declare gigapixels): its header, or why it is refused. `n` is its 1-based number, for the message.
 */
export function checkOutputImage(bytes: Buffer, n: number): { header: ImageHeader } | { refused: string } {
  if (bytes.length > OUTPUT_LIMITS.maxBytes)
    return {
      refused: `image ${n} is ${Math.round(bytes.length / 1024 / 1024)} MB, over the ${OUTPUT_LIMITS.maxBytes / 1024 / 1024} MB cap`,
    };
  const header = sniffImage(bytes);
  if (!header || !(OUTPUT_LIMITS.formats as readonly ImageFormat[]).includes(header.format))
    return { refused: `image ${n} is not a PNG, JPEG or WebP${header ? ` (${header.format})` : ''}` };
  if (header.width * header.height > OUTPUT_LIMITS.maxPixels)
    return { refused: `image ${n} declares ${header.width}×${header.height}, over the ${OUTPUT_LIMITS.maxPixels / 1e6} MP cap` };
  return { header };
}

/** Why the first of a result's `images` that fails {@link checkOutputImage} is refused, or null when none does. */
export function refusedOutputImage(images: readonly Buffer[]): string | null {
  for (const [i, bytes] of images.entries()) {
    const checked = checkOutputImage(bytes, i + 1);
    if ('refused' in checked) return checked.refused;
  }
  return null;
}
