import sharp from 'sharp';
import { svgText } from './text-svg.js';

const W = 800;
const H = 360;

/**
 * A small PNG chart for `/admin stats`: jobs per day as bars, cost per day as a line, and cost by
 * backend as a legend. Drawn as SVG and rasterised by sharp, so no canvas or browser is needed; the
 * labels are outlines of the bundled font (core/io/text-svg.ts), so no system font is either.
 */
export async function renderStatsChart(
  byDay: { day: string; jobs: number; costUsd: number }[],
  byBackend: { backend: string; costUsd: number }[],
): Promise<Buffer> {
  const left = 50;
  const right = W - 200;
  const top = 30;
  const bottom = H - 50;
  const maxJobs = Math.max(1, ...byDay.map((d) => d.jobs));
  const maxCost = Math.max(0.0001, ...byDay.map((d) => d.costUsd));
  const n = Math.max(1, byDay.length);
  const slot = (right - left) / n;
  const bars = byDay
    .map((d, i) => {
      const h = ((bottom - top) * d.jobs) / maxJobs;
      const x = left + i * slot + slot * 0.15;
      return (
        `<rect x="${x.toFixed(1)}" y="${(bottom - h).toFixed(1)}" width="${(slot * 0.7).toFixed(1)}" height="${h.toFixed(1)}" fill="#5865f2"/>` +
        (n <= 14 ? svgText(d.day.slice(5), { x: x + slot * 0.35, y: bottom + 16, size: 11, anchor: 'middle', fill: '#ccc' }) : '')
      );
    })
    .join('');
  const points = byDay
    .map((d, i) => `${(left + i * slot + slot / 2).toFixed(1)},${(bottom - ((bottom - top) * d.costUsd) / maxCost).toFixed(1)}`)
    .join(' ');
  const legend = byBackend
    .slice(0, 8)
    .map((b, i) => svgText(`${b.backend}: $${b.costUsd.toFixed(4)}`, { x: right + 20, y: top + 40 + i * 20, size: 13, fill: '#ddd' }))
    .join('');
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}">
<rect width="100%" height="100%" fill="#2b2d31"/>
${svgText(`Jobs per day (bars, max ${maxJobs}) · cost per day (line, max $${maxCost.toFixed(4)})`, { x: left, y: 20, size: 14, fill: '#fff' })}
<line x1="${left}" y1="${bottom}" x2="${right}" y2="${bottom}" stroke="#888"/>
${bars}
${byDay.length > 0 ? `<polyline points="${points}" fill="none" stroke="#f0b232" stroke-width="3"/>` : ''}
${svgText('Cost by backend', { x: right + 20, y: top + 15, size: 14, fill: '#fff' })}
${legend}
</svg>`;
  return sharp(Buffer.from(svg)).png().toBuffer();
}
