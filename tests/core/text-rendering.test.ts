import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { gridLayout } from '../../core/io/grid.js';
import { emptyCwd, sourceEntryArgs } from '../setup/processes.js';

const run = promisify(execFile);
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'imagebot-fonts-'));
  // A fontconfig that knows no font at all, like node:24-bookworm-slim.
  await writeFile(
    join(dir, 'fonts.conf'),
    `<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig><cachedir>${dir}/cache</cachedir></fontconfig>\n`,
  );
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Renders the grid and the chart in a child process under the given fontconfig. */
async function renderIn(env: Record<string, string>): Promise<{ grid: Buffer; chart: Buffer }> {
  const { stdout } = await run(process.execPath, sourceEntryArgs('tests/fixtures/render-text.ts'), {
    cwd: emptyCwd(),
    env: { ...process.env, ...env },
    maxBuffer: 64 * 1024 * 1024,
  });
  const out = JSON.parse(stdout) as { grid: string; chart: string };
  return { grid: Buffer.from(out.grid, 'base64'), chart: Buffer.from(out.chart, 'base64') };
}

const noFonts = () => ({ FONTCONFIG_FILE: join(dir, 'fonts.conf'), FONTCONFIG_PATH: dir, HOME: dir, XDG_DATA_HOME: dir });

/** Bright pixels (the white digit) within `r` of a label's centre, and the crop itself. */
async function labelAt(image: Buffer, cx: number, cy: number, r: number): Promise<{ bright: number; crop: Buffer }> {
  const { data, info } = await sharp(image).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const crop: number[] = [];
  let bright = 0;
  for (let y = cy - r; y <= cy + r; y++) {
    for (let x = cx - r; x <= cx + r; x++) {
      const i = (y * info.width + x) * info.channels;
      const lum = (data[i]! + data[i + 1]! + data[i + 2]!) / 3;
      crop.push(lum > 160 ? 1 : 0);
      if (lum > 160) bright++;
    }
  }
  return { bright, crop: Buffer.from(crop) };
}

describe('text in images does not depend on the machine’s fonts', () => {
  test('the grid’s numbers 1-4 are drawn, each a different shape, under a fontconfig that has no fonts', async () => {
    const { grid } = await renderIn(noFonts());
    const { cols } = gridLayout(4);
    // Tiles are 512 px apart plus an 8 px gap; each label is a 44 px disc 8 px in from the tile's corner, centred at 22,22.
    const labels = await Promise.all(
      [0, 1, 2, 3].map((i) => labelAt(grid, (i % cols) * 520 + 8 + 22, Math.floor(i / cols) * 520 + 8 + 22, 9)),
    );
    for (const l of labels) expect(l.bright).toBeGreaterThan(25);
    for (let a = 0; a < labels.length; a++) {
      for (let b = a + 1; b < labels.length; b++) expect(labels[a]!.crop.equals(labels[b]!.crop)).toBe(false);
    }
  });

  test('the grid and the /admin stats chart come out identical with and without the machine’s fonts', async () => {
    const [bare, usual] = await Promise.all([renderIn(noFonts()), renderIn({})]);
    const chart = await labelAt(bare.chart, 200, 14, 10);
    // The title ("Jobs per day …") starts at x = 50 on the first line.
    expect(chart.bright).toBeGreaterThan(10);
    expect(bare.grid.equals(usual.grid)).toBe(true);
    expect(bare.chart.equals(usual.chart)).toBe(true);
  });
});
