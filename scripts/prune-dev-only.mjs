// Runs in the image after `npm ci --omit=dev`: removes the packages npm still installed although
// only development needs them. npm keeps a devDependency that is also an *optional peer* of a
// production package (flagged `devOptional` in the lockfile): @prisma/client names `prisma` and
// `typescript` as optional peers, which brings the Prisma CLI and its tree (~230 MB) into the image.
// `--omit=optional` would also drop sharp's native binaries, so this prunes exactly those flags.
// .ci/image-replay.ts runs the image's processes after this step, so nothing they load is missing.
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const lock = JSON.parse(readFileSync(join('node_modules', '.package-lock.json'), 'utf8'));
let removed = 0;
// Deepest first, so a nested package goes before the folder that holds it.
const paths = Object.entries(lock.packages)
  .filter(([path, meta]) => path.startsWith('node_modules/') && meta.devOptional === true)
  .map(([path]) => path)
  .sort((a, b) => b.length - a.length);
for (const path of paths) {
  if (!existsSync(path)) continue;
  rmSync(path, { recursive: true, force: true });
  removed++;
}
// Their commands in node_modules/.bin now point nowhere.
const bin = join('node_modules', '.bin');
for (const name of existsSync(bin) ? readdirSync(bin) : []) {
  if (!existsSync(join(bin, name))) rmSync(join(bin, name), { force: true });
}
process.stdout.write(`removed ${removed} development-only packages that npm installed as optional peers\n`);
