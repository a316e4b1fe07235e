import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { create, type Font } from 'fontkitten';

/**
 * Text for images we draw (grid numbers, chart labels) as SVG outlines in DejaVu Sans, a free font
 * that ships with the product (@fontsource/dejavu-sans, its licence beside the files). An SVG
 * `<text>` would make librsvg ask fontconfig for a font, and the runtime image has none: the
 * numbers would come out as empty boxes. Outlines need no font lookup on any machine.
 */

type FontWeight = 'regular' | 'bold';

const FILES: Record<FontWeight, string> = {
  regular: '@fontsource/dejavu-sans/files/dejavu-sans-latin-400-normal.woff',
  bold: '@fontsource/dejavu-sans/files/dejavu-sans-latin-700-normal.woff',
};
const fonts = new Map<FontWeight, Font>();

function font(weight: FontWeight): Font {
  let f = fonts.get(weight);
  if (!f) {
    const parsed = create(readFileSync(createRequire(import.meta.url).resolve(FILES[weight])));
    if (!('glyphForCodePoint' in parsed)) throw new Error(`${FILES[weight]} is a font collection, not a font`);
    f = parsed;
    fonts.set(weight, f);
  }
  return f;
}

interface SvgTextOptions {
  /** Anchor point; `y` is the baseline, as for SVG `<text>`. */
  x: number;
  y: number;
  /** Font size in pixels. */
  size: number;
  /** An SVG colour; callers pass constants. */
  fill: string;
  anchor?: 'start' | 'middle' | 'end';
  weight?: FontWeight;
}

/**
 * `text` as one SVG `<path>` of glyph outlines, placed like `<text x y font-size text-anchor>` would
 * place it. Characters the font lacks show its missing-glyph box. No kerning or shaping: the
 * labels are short Latin strings and digits.
 */
export function svgText(text: string, o: SvgTextOptions): string {
  const f = font(o.weight ?? 'regular');
  let pen = 0;
  let d = '';
  for (const ch of text) {
    const glyph = f.glyphForCodePoint(ch.codePointAt(0)!);
    if (glyph.path.commands.length > 0) d += glyph.path.translate(pen, 0).toSVG();
    pen += glyph.advanceWidth;
  }
  const scale = o.size / f.unitsPerEm;
  const width = pen * scale;
  const left = o.x - (o.anchor === 'middle' ? width / 2 : o.anchor === 'end' ? width : 0);
  if (!d) return '';
  // Font units grow upwards; SVG's y grows downwards.
  return `<path transform="translate(${left.toFixed(2)} ${o.y.toFixed(2)}) scale(${scale.toFixed(6)} ${(-scale).toFixed(6)})" fill="${o.fill}" d="${d}"/>`;
}
