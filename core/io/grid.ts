import sharp, { type OverlayOptions } from 'sharp';
import { OUTPUT_LIMITS } from '../image-limits.js';
import { svgText } from './text-svg.js';

/** Longest side of one tile; a 2 × 2 grid of 1024² images comes out at about one megapixel. */
const TILE = 512;
const GAP = 8;

/** Grid layout for n images: side by side for two, two columns otherwise. */
export function gridLayout(n: number): { cols: number; rows: number } {
  const cols = Math.min(n, 2);
  return { cols, rows: Math.ceil(n / cols) };
}

function label(n: number): Buffer {
  // A number in a dark disc, so it reads on light and dark images alike; matches the V1/U1 buttons.
  // Drawn as outlines of the bundled font: the runtime image has no fonts for an SVG <text>.
  return Buffer.from(
    `<svg xmlns="http://www.w3.org/2000/svg" width="44" height="44">` +
      `<circle cx="22" cy="22" r="20" fill="rgba(0,0,0,0.6)" stroke="white" stroke-width="2"/>` +
      svgText(String(n), { x: 22, y: 30.5, size: 24, weight: 'bold', fill: 'white', anchor: 'middle' }) +
      `</svg>`,
  );
}

/**
 * One preview of several results, each tile numbered, as WebP: small enough to sit next to the
 * full-size images in one message, and what the embed shows.
 */
export async function makeGrid(images: readonly Buffer[]): Promise<Buffer> {
  const { cols, rows } = gridLayout(images.length);
  const tiles = await Promise.all(
    images.map(async (img) => {
      const data = await sharp(img, { limitInputPixels: OUTPUT_LIMITS.maxPixels })
        .resize(TILE, TILE, { fit: 'inside' })
        .png()
        .toBuffer({ resolveWithObject: true });
      return data;
    }),
  );
  const tileW = Math.max(...tiles.map((t) => t.info.width));
  const tileH = Math.max(...tiles.map((t) => t.info.height));
  const width = cols * tileW + (cols - 1) * GAP;
  const height = rows * tileH + (rows - 1) * GAP;
  const layers: OverlayOptions[] = [];
  tiles.forEach((t, i) => {
    const left = (i % cols) * (tileW + GAP) + Math.floor((tileW - t.info.width) / 2);
    const top = Math.floor(i / cols) * (tileH + GAP) + Math.floor((tileH - t.info.height) / 2);
    layers.push({ input: t.data, left, top });
    layers.push({ input: label(i + 1), left: left + 8, top: top + 8 });
  });
  return sharp({ create: { width, height, channels: 3, background: { r: 32, g: 34, b: 37 } } })
    .composite(layers)
    .webp({ quality: 88 })
    .toBuffer();
}
