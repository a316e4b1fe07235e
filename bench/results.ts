/**
 * What preparing a result costs the bot's event loop: the numbered grid of four 1024² images, and
 * fitting images under an upload limit (PNG passes through; over the limit WebP/JPEG encodes).
 *
 *   npm run bench:results        (BENCH_RUNS=20)
 */
import sharp from 'sharp';
import { fitForUpload } from '../core/io/fit-upload.js';
import { makeGrid } from '../core/io/grid.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 20);
const out = (s: string) => process.stdout.write(`${s}\n`);

/** Photo-like content: smooth gradients plus noise, so PNG sizes resemble real SDXL output (~1.5 MB). */
async function image(seed: number): Promise<Buffer> {
  const w = 1024;
  const h = 1024;
  const raw = Buffer.alloc(w * h * 3);
  let s = seed;
  for (let i = 0; i < w * h; i++) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    const x = i % w;
    const y = Math.floor(i / w);
    const n = (s >> 16) & 15;
    raw[i * 3] = (x / 4 + n) & 255;
    raw[i * 3 + 1] = (y / 4 + n) & 255;
    raw[i * 3 + 2] = ((x + y) / 8 + n + seed * 40) & 255;
  }
  return sharp(raw, { raw: { width: w, height: h, channels: 3 } })
    .png()
    .toBuffer();
}

async function time(label: string, fn: () => Promise<unknown>): Promise<void> {
  for (let i = 0; i < 2; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    await fn();
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  const pct = (p: number) => times[Math.min(times.length - 1, Math.floor(p * times.length))]!.toFixed(1);
  out(`  ${label}: p50 ${pct(0.5)} ms  p95 ${pct(0.95)} ms`);
}

const images = await Promise.all([1, 2, 3, 4].map(image));
const grid = await makeGrid(images);
out(`bench/results: node ${process.version}, sharp ${sharp.versions.sharp}, libvips ${sharp.versions.vips}, ${RUNS} runs after 2 warm-ups`);
out(
  `  input: four 1024×1024 PNGs of ${(images.reduce((n, b) => n + b.length, 0) / 4 / 1e6).toFixed(2)} MB each; grid ${(grid.length / 1e3).toFixed(0)} kB WebP`,
);
await time('grid of 4 (resize, number, WebP)', () => makeGrid(images));
await time('fit one image under 10 MiB (PNG passes)', () => fitForUpload(images[0]!, 10 * 1024 * 1024, 'image-1'));
await time('fit one image under 1 MiB (re-encoded)', () => fitForUpload(images[0]!, 1024 * 1024, 'image-1'));
out(`  RSS after: ${(process.memoryUsage().rss / 1e6).toFixed(0)} MB`);
