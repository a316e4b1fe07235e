import { type Logger, type LoggerOptions, pino } from 'pino';

export type { Logger } from 'pino';

/** Paths pino blanks out wherever they appear in a log object. */
const REDACT_PATHS = [
  'DISCORD_TOKEN',
  'REPLICATE_API_TOKEN',
  'HF_TOKEN',
  'A1111_AUTH',
  'token',
  'password',
  'authorization',
  'Authorization',
  '*.DISCORD_TOKEN',
  '*.REPLICATE_API_TOKEN',
  '*.HF_TOKEN',
  '*.A1111_AUTH',
  '*.token',
  '*.password',
  '*.authorization',
  '*.Authorization',
  'headers.authorization',
  '*.headers.authorization',
  'config.DATABASE_URL',
  'config.REDIS_URL',
];

const URL_CREDENTIALS = /([a-z][a-z0-9+.-]*:\/\/)[^/@\s:]+(:[^/@\s]*)?@/gi;

/** Removes user:password from any URL inside a string. */
export function scrubUrlCredentials(text: string): string {
  return text.replace(URL_CREDENTIALS, '$1***@');
}

function scrubValue(v: unknown): unknown {
  return typeof v === 'string' && v.includes('@') ? scrubUrlCredentials(v) : v;
}

/**
 * The one logger factory. JSON lines, secrets redacted by path, credentials stripped from URLs
 * in top-level strings, error messages and the message itself.
 */
export function createLogger(opts: { level?: string; name?: string; destination?: pino.DestinationStream } = {}): Logger {
  const options: LoggerOptions = {
    level: opts.level ?? 'info',
    base: { service: opts.name ?? 'imagebot' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    hooks: {
      logMethod(args, method) {
        for (let i = 0; i < args.length; i++) args[i] = scrubValue(args[i]) as never;
        method.apply(this, args as Parameters<typeof method>);
      },
    },
    formatters: {
      log(obj) {
        const out: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(obj)) out[k] = scrubValue(v);
        return out;
      },
    },
    serializers: {
      err: (err: unknown) => {
        const s = pino.stdSerializers.err(err as Error) as unknown as Record<string, unknown>;
        if (typeof s.message === 'string') s.message = scrubUrlCredentials(s.message);
        if (typeof s.stack === 'string') s.stack = scrubUrlCredentials(s.stack);
        return s;
      },
    },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return opts.destination ? pino(options, opts.destination) : pino(options);
}
