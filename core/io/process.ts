import type { z } from 'zod';
import { ConfigError, loadConfig } from '../config.js';
import { loadEnvFile } from './env-file.js';
import { createLogger, type Logger } from './logger.js';

/** Stop signals get this long to finish work under way before the process is killed. */
const GRACE_MS = 20_000;

/** The process's own tokens, stripped from every log line whatever their shape. */
export function processSecrets(config: unknown): (string | undefined)[] {
  const c = config as Record<string, unknown>;
  return ['DISCORD_TOKEN', 'REPLICATE_API_TOKEN', 'HF_TOKEN', 'A1111_AUTH', 'WORKER_JOIN_TOKEN'].map((k) =>
    typeof c[k] === 'string' ? c[k] : undefined,
  );
}

/**
 * Runs a process entry point: read `.env` from the working directory if there is one (real
 * environment variables win), parse the environment (one line per bad variable, exit 1), start,
 * then stop gracefully on SIGTERM/SIGINT within a bounded time (during start-up: exit at once).
 */
export async function runProcess<S extends z.ZodType>(
  name: 'bot' | 'worker',
  schema: S,
  start: (config: z.infer<S>, log: Logger) => Promise<{ stop(): Promise<void> }>,
): Promise<void> {
  let config: z.infer<S>;
  let envFile: string | undefined;
  try {
    envFile = loadEnvFile();
    config = loadConfig(schema, process.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const line of err.lines) process.stderr.write(`invalid configuration: ${line}\n`);
    process.exit(1);
  }
  const log = createLogger({ level: (config as { LOG_LEVEL: string }).LOG_LEVEL, name, secrets: processSecrets(config) });
  if (envFile) log.info({ envFile }, 'read settings from .env (variables set in the environment win)');
  let running: { stop(): Promise<void> } | undefined;
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => process.exit(1), GRACE_MS).unref();
    if (!running) {
      // Nothing taken on yet (start-up can wait on an unreachable Redis indefinitely): end now
      // rather than let `docker stop` wait out its grace period and kill us.
      log.info({ signal }, 'stop requested while starting; start-up abandoned');
      process.exit(0);
    }
    log.info({ signal }, 'shutting down');
    running.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  // From the very start: as PID 1 in the image (no init), a signal without a handler is ignored.
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  try {
    running = await start(config, log);
  } catch (err) {
    // Configuration read at start (PRESETS_FILE) fails the same way as the environment.
    if (!(err instanceof ConfigError)) throw err;
    for (const line of err.lines) process.stderr.write(`invalid configuration: ${line}\n`);
    process.exit(1);
  }
}
