import { resolve } from 'node:path';

/**
 * Loads `.env` from the working directory into `process.env` when the file exists, the way
 * `docker compose` and most tools do; a variable already set in the real environment wins, even
 * when set to an empty string. Called by every entry point (bot, worker, migrate, register-commands,
 * doctor, status, invite), never by modules that tests import.
 * @returns the absolute path that was loaded, or undefined when there is no such file.
 */
export function loadEnvFile(path = '.env'): string | undefined {
  const file = resolve(path);
  try {
    process.loadEnvFile(file);
    return file;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
