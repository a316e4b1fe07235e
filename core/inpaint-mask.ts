/**
 * Whether an /inpaint mask fits its image: one rule, checked twice. At the edge, from the sizes
 * Discord declares for the two attachments, so a mismatch is refused privately before any job,
 * quota or download exists; and again on the decoded files after admission (core/io/inpaint-image.ts),
 * the backstop for attachments declared without a size or with a false one.
 */

export interface PixelSize {
  width: number;
  height: number;
}

/**
 * The mask must have the image's proportions (2 % or one pixel of slack); its size need not match,
 * since it is resized to the image. A mask of other proportions would have to be stretched,
 * repainting places nobody painted.
 */
export function maskFits(image: PixelSize, mask: PixelSize): boolean {
  return Math.abs(mask.height - (mask.width * image.height) / image.width) <= Math.max(1, 0.02 * mask.height);
}

/** What the member is told when the mask does not fit. */
export function maskMismatchText(image: PixelSize, mask: PixelSize): string {
  return (
    `The mask is ${mask.width}×${mask.height} but the image is ${image.width}×${image.height}. ` +
    'The mask must have the same proportions as the image (ideally the same size).'
  );
}

type Declared = { width?: number | null; height?: number | null };

const known = (a: Declared): PixelSize | null =>
  a.width && a.height && a.width > 0 && a.height > 0 ? { width: a.width, height: a.height } : null;

/**
 * The refusal for a mask that cannot fit its image, judged from the sizes Discord declares; null
 * when it may fit or a size is missing (the check on the decoded files decides then). A declared
 * size is the stored one, before EXIF orientation, while the decoded check compares upright
 * pictures: so a mask that would fit the image turned a quarter is left to that check, never
 * refused here on a guess.
 */
export function declaredMaskMismatch(image: Declared, mask: Declared): string | null {
  const i = known(image);
  const m = known(mask);
  if (!i || !m) return null;
  if (maskFits(i, m) || maskFits({ width: i.height, height: i.width }, m)) return null;
  return maskMismatchText(i, m);
}
