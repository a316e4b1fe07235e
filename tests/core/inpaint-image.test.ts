import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { expect, test } from 'vitest';
import { isUserError } from '../../core/errors.js';
import { modelSize, pasteBack, prepareInpaint } from '../../core/io/inpaint-image.js';

const LIMIT = { maxPixels: 16_000_000 };

/** Raw single-channel pixels of any PNG/JPEG (channel 0). */
async function grey(png: Buffer) {
  const { data, info } = await sharp(png).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

async function rgb(img: Buffer) {
  const { data, info } = await sharp(img).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  expect(info.channels).toBe(3);
  return { data, width: info.width, height: info.height };
}

/** Greyscale PNG, black with a white rectangle. */
function maskPng(width: number, height: number, rect: { x: number; y: number; w: number; h: number } | null): Promise<Buffer> {
  const px = Buffer.alloc(width * height * 3);
  if (rect) {
    for (let y = rect.y; y < rect.y + rect.h; y += 1) px.fill(255, (y * width + rect.x) * 3, (y * width + rect.x + rect.w) * 3);
  }
  return sharp(px, { raw: { width, height, channels: 3 } })
    .greyscale()
    .png()
    .toBuffer();
}

/** Deterministic noisy RGBA, fully opaque except an optional transparent square. */
function noiseRgba(width: number, height: number, hole?: { x: number; y: number; size: number }): Buffer {
  const px = Buffer.alloc(width * height * 4);
  let s = 12345;
  for (let i = 0; i < px.length; i += 1) {
    s = (s * 1103515245 + 12345) >>> 0;
    px[i] = i % 4 === 3 ? 255 : s >>> 24;
  }
  if (hole) {
    for (let y = hole.y; y < hole.y + hole.size; y += 1) {
      for (let x = hole.x; x < hole.x + hole.size; x += 1) px[(y * width + x) * 4 + 3] = 0;
    }
  }
  return px;
}

async function userErrorOf(p: Promise<unknown>): Promise<string> {
  const err: unknown = await p.then(
    () => new Error('expected a UserError'),
    (e: unknown) => e,
  );
  if (!isUserError(err)) throw err;
  expect(err.code).toBe('attachment_rejected');
  return err.userMessage;
}

test('model sizes are multiples of 64 near one megapixel with the aspect kept', () => {
  for (const [w, h] of [
    [1, 1],
    [4, 3],
    [3, 4],
    [16, 9],
    [9, 16],
    [3, 2],
    [2, 3],
    [1920, 1080],
    [4032, 3024],
    [700, 2800],
  ] as const) {
    const s = modelSize(w, h);
    expect(s.width % 64, `${w}:${h}`).toBe(0);
    expect(s.height % 64, `${w}:${h}`).toBe(0);
    expect(Math.abs(s.width * s.height - 1024 * 1024) / (1024 * 1024), `${w}:${h} area`).toBeLessThan(0.1);
    expect(Math.abs(s.width / s.height - w / h) / (w / h), `${w}:${h} aspect`).toBeLessThan(0.08);
  }
  expect(modelSize(1000, 1000)).toEqual({ width: 1024, height: 1024 });
  expect(modelSize(1920, 1080)).toEqual({ width: 1344, height: 768 });
  expect(modelSize(300, 300, 512 * 512)).toEqual({ width: 512, height: 512 });
  // Extreme panoramas keep their aspect within bounds instead of growing a 30000-px side.
  expect(modelSize(10_000, 1000)).toEqual({ width: 2048, height: 192 });
  expect(modelSize(100_000, 10)).toEqual({ width: 2048, height: 64 });
});

test('EXIF orientation 6 is applied: width and height swap and the content turns', async () => {
  // Stored 300×200, left half red, right half blue; orientation 6 means "rotate 90° clockwise to view".
  const px = Buffer.alloc(300 * 200 * 3);
  for (let i = 0; i < 300 * 200; i += 1) px.set(i % 300 < 150 ? [255, 0, 0] : [0, 0, 255], i * 3);
  const jpeg = await sharp(px, { raw: { width: 300, height: 200, channels: 3 } })
    .jpeg()
    .withMetadata({ orientation: 6 })
    .toBuffer();
  const prep = await prepareInpaint(jpeg, await maskPng(200, 300, { x: 0, y: 0, w: 50, h: 50 }), LIMIT);
  expect(prep.original).toMatchObject({ width: 200, height: 300 });
  const o = await rgb(prep.original.png);
  expect([o.width, o.height]).toEqual([200, 300]);
  const at = (x: number, y: number) => [...o.data.subarray((y * 200 + x) * 3, (y * 200 + x) * 3 + 3)];
  expect(at(100, 40)[0]).toBeGreaterThan(200); // top: the stored left half, red
  expect(at(100, 260)[2]).toBeGreaterThan(200); // bottom: blue
  expect(prep.height).toBeGreaterThan(prep.width);
});

test('an explicit mask of another size (same proportions) is resized to the image', async () => {
  const image = await sharp(noiseRgba(400, 300), { raw: { width: 400, height: 300, channels: 4 } })
    .png()
    .toBuffer();
  const prep = await prepareInpaint(image, await maskPng(200, 150, { x: 50, y: 50, w: 50, h: 50 }), LIMIT);
  const full = await grey(prep.maskFull);
  expect([full.width, full.height]).toEqual([400, 300]);
  expect(full.data[150 * 400 + 150]).toBe(255); // centre of the scaled square (100..200)
  expect(full.data[50 * 400 + 50]).toBe(0);
  expect(full.data[150 * 400 + 97]).toBe(0); // just left of the square
  expect(full.data[150 * 400 + 101]).toBeGreaterThan(0); // just inside it: feathered, not zero
  expect(full.data[150 * 400 + 101]).toBeLessThan(255);
  const small = await grey(prep.mask);
  expect([small.width, small.height]).toEqual([prep.width, prep.height]);
  expect([prep.width, prep.height]).toEqual([1152, 896]);
  expect(new Set(small.data)).toEqual(new Set([0, 255]));
  const sx = (x: number) => Math.round((x * prep.width) / 400);
  const sy = (y: number) => Math.round((y * prep.height) / 300);
  expect(small.data[sy(150) * prep.width + sx(150)]).toBe(255);
  expect(small.data[sy(50) * prep.width + sx(50)]).toBe(0);
  const img = await sharp(prep.image).metadata();
  expect([img.width, img.height, img.channels, img.format]).toEqual([1152, 896, 3, 'png']);
});

test('a mask of other proportions is refused rather than stretched', async () => {
  const image = await sharp(noiseRgba(400, 300), { raw: { width: 400, height: 300, channels: 4 } })
    .png()
    .toBuffer();
  const msg = await userErrorOf(prepareInpaint(image, await maskPng(300, 300, { x: 0, y: 0, w: 10, h: 10 }), LIMIT));
  expect(msg).toMatch(/The mask is 300×300 but the image is 400×300/);
});

test('a transparent square in an RGBA PNG becomes the mask', async () => {
  const image = await sharp(noiseRgba(256, 256, { x: 64, y: 64, size: 64 }), { raw: { width: 256, height: 256, channels: 4 } })
    .png()
    .toBuffer();
  const prep = await prepareInpaint(image, null, LIMIT);
  const full = await grey(prep.maskFull);
  let wrong = 0;
  for (let y = 0; y < 256; y += 1) {
    for (let x = 0; x < 256; x += 1) {
      const inside = x >= 64 && x < 128 && y >= 64 && y < 128;
      if (inside !== full.data[y * 256 + x]! > 0) wrong += 1;
    }
  }
  expect(wrong).toBe(0);
  expect(full.data[96 * 256 + 96]).toBe(255);
  const small = await grey(prep.mask);
  expect([prep.width, prep.height]).toEqual([1024, 1024]);
  expect(small.data[384 * 1024 + 384]).toBe(255);
  expect(small.data[100 * 1024 + 100]).toBe(0);
  expect(small.data[700 * 1024 + 384]).toBe(0);
});

test('a mask whose background is transparent white counts only its opaque white strokes', async () => {
  const image = await sharp(noiseRgba(128, 128), { raw: { width: 128, height: 128, channels: 4 } })
    .png()
    .toBuffer();
  const m = Buffer.alloc(128 * 128 * 4, 255);
  for (let i = 0; i < 128 * 128; i += 1) m[i * 4 + 3] = i % 128 < 32 ? 255 : 0; // left quarter painted
  const mask = await sharp(m, { raw: { width: 128, height: 128, channels: 4 } })
    .png()
    .toBuffer();
  const full = await grey((await prepareInpaint(image, mask, LIMIT)).maskFull);
  expect(full.data[64 * 128 + 10]).toBe(255);
  expect(full.data[64 * 128 + 100]).toBe(0);
});

test('an opaque image without a mask is refused with a hint', async () => {
  const png = await sharp(noiseRgba(64, 64), { raw: { width: 64, height: 64, channels: 4 } })
    .png()
    .toBuffer();
  const jpeg = await sharp(png).jpeg().toBuffer();
  for (const img of [png, jpeg]) {
    expect(await userErrorOf(prepareInpaint(img, null, LIMIT))).toBe(
      'Add a mask, or upload a PNG whose transparent pixels mark the area to repaint.',
    );
  }
});

test('an all-black mask is refused: nothing to repaint', async () => {
  const image = await sharp(noiseRgba(64, 64), { raw: { width: 64, height: 64, channels: 4 } })
    .png()
    .toBuffer();
  expect(await userErrorOf(prepareInpaint(image, await maskPng(64, 64, null), LIMIT))).toMatch(/entirely black/);
});

test('unreadable input and decompression bombs are refused as the member’s error', async () => {
  expect(await userErrorOf(prepareInpaint(Buffer.from('nope'), null, LIMIT))).toMatch(/image could not be read/);
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(20_000, 0);
  ihdr.writeUInt32BE(20_000, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body) >>> 0);
    return Buffer.concat([len, body, crc]);
  };
  const bomb = Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.alloc(64))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
  expect(await userErrorOf(prepareInpaint(bomb, null, LIMIT))).toMatch(/too many pixels; the limit is 16 megapixels/);
});

test('pasteBack keeps every pixel outside the mask byte-identical and changes the inside', async () => {
  const image = await sharp(noiseRgba(320, 240), { raw: { width: 320, height: 240, channels: 4 } })
    .jpeg()
    .toBuffer();
  const prep = await prepareInpaint(image, await maskPng(320, 240, { x: 100, y: 60, w: 80, h: 90 }), LIMIT);
  const generated = await sharp({ create: { width: prep.width, height: prep.height, channels: 3, background: { r: 255, g: 0, b: 255 } } })
    .png()
    .toBuffer();
  const out = await rgb(await pasteBack(prep.original, prep.maskFull, generated));
  const orig = await rgb(prep.original.png);
  const decoded = await rgb(image); // the member's pixels, decoded independently
  const full = await grey(prep.maskFull);
  expect([out.width, out.height]).toEqual([320, 240]);
  expect(orig.data.equals(decoded.data)).toBe(true);
  let outside = 0;
  let changedOutside = 0;
  let fullyInside = 0;
  let notMagentaInside = 0;
  for (let p = 0; p < 320 * 240; p += 1) {
    const o = out.data.subarray(p * 3, p * 3 + 3);
    if (full.data[p] === 0) {
      outside += 1;
      if (!o.equals(orig.data.subarray(p * 3, p * 3 + 3))) changedOutside += 1;
    } else if (full.data[p] === 255) {
      fullyInside += 1;
      if (o[0] !== 255 || o[1] !== 0 || o[2] !== 255) notMagentaInside += 1;
    }
  }
  expect(outside).toBe(320 * 240 - 80 * 90);
  expect(changedOutside).toBe(0);
  expect(fullyInside).toBeGreaterThan(60 * 70);
  expect(notMagentaInside).toBe(0);
});

test('pasteBack over an RGBA original restores its RGB outside the transparent area', async () => {
  const raw = noiseRgba(200, 150, { x: 20, y: 30, size: 40 });
  const image = await sharp(raw, { raw: { width: 200, height: 150, channels: 4 } })
    .png()
    .toBuffer();
  const prep = await prepareInpaint(image, null, LIMIT);
  const generated = await sharp({ create: { width: prep.width, height: prep.height, channels: 3, background: '#00ff00' } })
    .png()
    .toBuffer();
  const out = await rgb(await pasteBack(prep.original, prep.maskFull, generated));
  let changedOutside = 0;
  let changedInside = 0;
  for (let p = 0; p < 200 * 150; p += 1) {
    const same = out.data.subarray(p * 3, p * 3 + 3).equals(raw.subarray(p * 4, p * 4 + 3));
    if (raw[p * 4 + 3] === 255 && !same) changedOutside += 1;
    if (raw[p * 4 + 3] === 0 && !same) changedInside += 1;
  }
  expect(changedOutside).toBe(0);
  expect(changedInside).toBe(40 * 40);
});
