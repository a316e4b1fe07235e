/**
 * Cost of the output safety check: nsfwjs MobileNetV2 on TensorFlow.js (WebAssembly, else CPU), per
 * image: a 1024² result, and a live preview as boxes send them (ComfyUI: JPEG at most 512 px;
 * A1111's approximate decoders: smaller still), which strict guilds screen before showing.
 *
 *   npm run bench:classifier        (BENCH_RUNS=20)
 */
import sharp from 'sharp';
import { loadNsfwClassifier } from '../worker/safety/classifier.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 20);
const out = (s: string) => process.stdout.write(`${s}\n`);
const w = 1024;
const h = 1024;
const raw = Buffer.alloc(w * h * 3);
for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) raw.set([x % 256, y % 256, (x + y) % 256], (y * w + x) * 3);
const png = await sharp(raw, { raw: { width: w, height: h, channels: 3 } })
  .png()
  .toBuffer();

const t0 = performance.now();
const classifier = await loadNsfwClassifier();
const loadMs = performance.now() - t0;
for (let i = 0; i < 3; i++) await classifier.classify(png);
const times: number[] = [];
for (let i = 0; i < RUNS; i++) {
  const t = performance.now();
  await classifier.classify(png);
  times.push(performance.now() - t);
}
times.sort((a, b) => a - b);
const pct = (p: number, t = times) => t[Math.min(t.length - 1, Math.floor(p * t.length))]!.toFixed(0);
out(
  `bench/classifier: node ${process.version}, nsfwjs MobileNetV2 on tfjs ${classifier.backend}, 1024×1024 PNG, ${RUNS} runs after 3 warm-ups`,
);
out(`  model load: ${loadMs.toFixed(0)} ms`);
out(`  per image (decode + resize 224² + classify): p50 ${pct(0.5)} ms  p95 ${pct(0.95)} ms`);
for (const side of [512, 128]) {
  const preview = await sharp(png).resize(side, side).jpeg({ quality: 80 }).toBuffer();
  const t: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const s = performance.now();
    await classifier.classify(preview);
    t.push(performance.now() - s);
  }
  t.sort((a, b) => a - b);
  out(`  per preview ${side}×${side} JPEG (${(preview.length / 1024).toFixed(0)} KB): p50 ${pct(0.5, t)} ms  p95 ${pct(0.95, t)} ms`);
}
out(`  RSS after: ${(process.memoryUsage().rss / 1024 / 1024).toFixed(0)} MB`);
