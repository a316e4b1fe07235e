import sharp from 'sharp';
import { UserError } from '../errors.js';
import { maskFits, maskMismatchText } from '../inpaint-mask.js';

/** SDXL's native area; model sizes are scaled to it. */
const DEFAULT_TARGET_PIXELS = 1024 * 1024;
const STEP = 64;
/** Gaussian sigma of the feather, in original pixels; the mask is eroded by about as much first. */
const FEATHER_SIGMA = 2;
const FEATHER_ERODE = 2;
/** Neutral fill under transparent pixels, so the model does not start from black. */
const FILL = { r: 128, g: 128, b: 128 };

/** The original, upright, kept at full size so that unmasked pixels can be restored exactly. */
export interface InpaintOriginal {
  /** RGBA PNG with EXIF orientation applied. */
  png: Buffer;
  width: number;
  height: number;
}

/** Inputs for an inpaint backend, plus what {@link pasteBack} needs afterwards. */
export interface PreparedInpaint {
  /** RGB PNG at model size. */
  image: Buffer;
  /** Greyscale PNG at model size, white = repaint, binary. */
  mask: Buffer;
  /** Model size: multiples of 64, aspect kept, area near the target. */
  width: number;
  height: number;
  original: InpaintOriginal;
  /** Greyscale PNG at original size: 0 exactly where nothing is repainted, feathered inwards. */
  maskFull: Buffer;
}

function reject(userMessage: string, cause?: unknown): UserError {
  return new UserError('attachment_rejected', userMessage, cause === undefined ? undefined : { cause });
}

/**
 * Model size for an image: both sides multiples of 64, aspect ratio kept, area near `targetPixels`.
 * The long side is capped at twice the square side (aspect ratios beyond 4:1 get a smaller area).
 */
export function modelSize(width: number, height: number, targetPixels = DEFAULT_TARGET_PIXELS): { width: number; height: number } {
  if (!(width > 0 && height > 0 && targetPixels > 0)) throw new RangeError('modelSize needs positive dimensions');
  const maxSide = Math.max(STEP, Math.round((2 * Math.sqrt(targetPixels)) / STEP) * STEP);
  const ratio = width / height;
  let w = Math.sqrt(targetPixels * ratio);
  let h = Math.sqrt(targetPixels / ratio);
  const down = Math.min(1, maxSide / Math.max(w, h));
  w *= down;
  h *= down;
  const up = Math.max(1, STEP / Math.min(w, h));
  w *= up;
  h *= up;
  const snap = (v: number): number => Math.min(maxSide, Math.max(STEP, Math.round(v / STEP) * STEP));
  return { width: snap(w), height: snap(h) };
}

function decodeError(what: string, maxPixels: number, err: unknown): UserError {
  if (/pixel limit/i.test(String(err))) {
    return reject(`The ${what} has too many pixels; the limit is ${Number((maxPixels / 1e6).toFixed(1))} megapixels.`, err);
  }
  return reject(`The ${what} could not be read. Upload a PNG, JPEG, WebP or GIF.`, err);
}

/** Upright RGBA pixels of the image; sharp refuses more than `maxPixels` before decoding. */
async function decodeRgba(input: Buffer, maxPixels: number): Promise<{ data: Buffer; width: number; height: number }> {
  try {
    const { data, info } = await sharp(input, { limitInputPixels: maxPixels })
      .rotate()
      .toColourspace('srgb')
      .ensureAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 4) throw new Error(`expected 4 channels, got ${info.channels}`);
    return { data, width: info.width, height: info.height };
  } catch (err) {
    throw decodeError('image', maxPixels, err);
  }
}

function grey(data: Buffer, width: number, height: number) {
  return sharp(data, { raw: { width, height, channels: 1 } });
}

/** Explicit mask → binary (0/255) at the image's size. Proportions must match; size need not. */
async function binaryFromMask(mask: Buffer, width: number, height: number, maxPixels: number): Promise<Uint8Array> {
  let out: Buffer;
  try {
    const meta = await sharp(mask, { limitInputPixels: maxPixels }).metadata();
    const { width: mw, height: mh } = meta.autoOrient;
    // The bot checked the sizes Discord declared; these are the files' own, upright.
    if (!maskFits({ width, height }, { width: mw, height: mh }))
      throw reject(maskMismatchText({ width, height }, { width: mw, height: mh }));
    // Transparent mask pixels mean "not painted": flatten onto black.
    out = await sharp(mask, { limitInputPixels: maxPixels })
      .rotate()
      .flatten({ background: '#000000' })
      .resize(width, height, { fit: 'fill' })
      .toColourspace('b-w')
      .extractChannel(0)
      .raw()
      .toBuffer();
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw decodeError('mask', maxPixels, err);
  }
  const bin = new Uint8Array(width * height);
  for (let i = 0; i < bin.length; i += 1) bin[i] = out[i]! >= 128 ? 255 : 0;
  return bin;
}

/** One direction of a square erosion: a pixel survives when no 0 lies within `r` along the line. */
function erodePass(src: Uint8Array, lines: number, len: number, stride: number, lineStride: number, r: number): Uint8Array {
  const dst = new Uint8Array(src.length);
  for (let l = 0; l < lines; l += 1) {
    const base = l * lineStride;
    let lastZero = -Infinity;
    for (let i = 0; i < len; i += 1) {
      if (src[base + i * stride] === 0) lastZero = i;
      dst[base + i * stride] = i - lastZero <= r ? 0 : 255;
    }
    let nextZero = Infinity;
    for (let i = len - 1; i >= 0; i -= 1) {
      if (src[base + i * stride] === 0) nextZero = i;
      if (nextZero - i <= r) dst[base + i * stride] = 0;
    }
  }
  return dst;
}

/**
 * Erode, blur, then clamp to the binary mask: the ramp lies inside the painted area, and every
 * pixel outside it stays exactly 0, so pasting back never touches it.
 */
async function feather(bin: Uint8Array, width: number, height: number): Promise<Buffer> {
  const eroded = erodePass(erodePass(bin, height, width, 1, width, FEATHER_ERODE), width, height, width, 1, FEATHER_ERODE);
  const blurred = await grey(Buffer.from(eroded.buffer), width, height).blur(FEATHER_SIGMA).toColourspace('b-w').raw().toBuffer();
  const out = Buffer.alloc(bin.length);
  for (let i = 0; i < out.length; i += 1) out[i] = bin[i] === 0 ? 0 : Math.max(1, blurred[i]!);
  return out;
}

/**
 * Prepares an inpaint: upright original, mask (explicit, or the image's transparent pixels) as a
 * binary model-size mask and a feathered full-size mask, and the image scaled to the model size.
 * Refusals (unreadable, too many pixels, no area to repaint, mask of other proportions) are
 * UserError `attachment_rejected`.
 */
export async function prepareInpaint(
  image: Buffer,
  mask: Buffer | null,
  opts: { maxPixels: number; targetPixels?: number },
): Promise<PreparedInpaint> {
  const { data: rgba, width, height } = await decodeRgba(image, opts.maxPixels);
  let bin: Uint8Array;
  if (mask) {
    bin = await binaryFromMask(mask, width, height, opts.maxPixels);
  } else {
    bin = new Uint8Array(width * height);
    for (let i = 0; i < bin.length; i += 1) bin[i] = rgba[i * 4 + 3]! < 128 ? 255 : 0;
  }
  if (!bin.includes(255)) {
    throw reject(
      mask
        ? 'The mask is entirely black, so there is nothing to repaint. Paint the area to repaint in white.'
        : 'Add a mask, or upload a PNG whose transparent pixels mark the area to repaint.',
    );
  }
  const size = modelSize(width, height, opts.targetPixels);
  const rawRgba = { raw: { width, height, channels: 4 as const } };
  const binBuf = Buffer.from(bin.buffer, bin.byteOffset, bin.byteLength);
  // Linear resampling has no negative lobes, so "> 0" marks every model pixel the paste-back may use.
  const small = await grey(binBuf, width, height)
    .resize(size.width, size.height, { fit: 'fill', kernel: 'linear' })
    .toColourspace('b-w')
    .raw()
    .toBuffer();
  for (let i = 0; i < small.length; i += 1) small[i] = small[i]! > 0 ? 255 : 0;

  const [modelImage, modelMask, originalPng, maskFull] = await Promise.all([
    sharp(rgba, rawRgba).flatten({ background: FILL }).resize(size.width, size.height, { fit: 'fill' }).png().toBuffer(),
    grey(small, size.width, size.height).toColourspace('b-w').png().toBuffer(),
    sharp(rgba, rawRgba).png().toBuffer(),
    feather(bin, width, height).then((f) => grey(f, width, height).toColourspace('b-w').png().toBuffer()),
  ]);
  return {
    image: modelImage,
    mask: modelMask,
    width: size.width,
    height: size.height,
    original: { png: originalPng, width, height },
    maskFull,
  };
}

/**
 * Scales the generated image to the original size and blends it over the original with `maskFull`
 * as alpha. Returns an RGB PNG of the original size in which every pixel where `maskFull` is 0 is
 * byte-identical to the original's RGB.
 */
export async function pasteBack(original: InpaintOriginal, maskFull: Buffer, generated: Buffer): Promise<Buffer> {
  const { width, height } = original;
  const orig = await sharp(original.png).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  const mask = await sharp(maskFull).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
  for (const { info } of [orig, mask]) {
    if (info.width !== width || info.height !== height) throw new Error('pasteBack: original and mask sizes differ');
  }
  if (orig.info.channels !== 4) throw new Error('pasteBack: original is not RGBA');
  const gen = await sharp(generated)
    .resize(width, height, { fit: 'fill' })
    .removeAlpha()
    .toColourspace('srgb')
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (gen.info.channels !== 3) throw new Error('pasteBack: generated image is not RGB');
  const o = orig.data;
  const m = mask.data;
  const g = gen.data;
  const out = Buffer.alloc(width * height * 3);
  for (let p = 0; p < width * height; p += 1) {
    const a = m[p]!;
    for (let c = 0; c < 3; c += 1) {
      const ov = o[p * 4 + c]!;
      out[p * 3 + c] = a === 0 ? ov : a === 255 ? g[p * 3 + c]! : Math.round((g[p * 3 + c]! * a + ov * (255 - a)) / 255);
    }
  }
  return sharp(out, { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();
}
