import { existsSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** The repository root. */
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const TSX_LOADER = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

/** `node` arguments that run a TypeScript entry point (e.g. `worker/main.ts`) from source, from any working directory. */
export function sourceEntryArgs(entry: string): string[] {
  return ['--import', TSX_LOADER, join(ROOT, entry)];
}

const EMPTY = join(tmpdir(), 'imagebot-empty-cwd');

/**
 * An empty working directory for processes under test: entry points read `.env` from their working
 * directory, and a developer's own `.env` in the checkout must never reach a test. One shared folder,
 * so nothing is left behind by test workers that are ended without an exit handler.
 */
export function emptyCwd(): string {
  mkdirSync(EMPTY, { recursive: true });
  if (existsSync(join(EMPTY, '.env'))) throw new Error(`${EMPTY} must stay empty, but holds a .env`);
  return EMPTY;
}
