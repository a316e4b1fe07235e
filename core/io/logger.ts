import { type Logger, type LoggerOptions, pino } from 'pino';

export type { Logger } from 'pino';

/** Paths pino blanks out wherever they appear in a log object. */
const REDACT_PATHS = [
  'DISCORD_TOKEN',
  'REPLICATE_API_TOKEN',
  'HF_TOKEN',
  'A1111_AUTH',
  'WORKER_JOIN_TOKEN',
  'token',
  'password',
  'authorization',
  'Authorization',
  '*.DISCORD_TOKEN',
  '*.REPLICATE_API_TOKEN',
  '*.HF_TOKEN',
  '*.A1111_AUTH',
  '*.WORKER_JOIN_TOKEN',
  '*.token',
  '*.password',
  '*.authorization',
  '*.Authorization',
  'headers.authorization',
  '*.headers.authorization',
  'config.DATABASE_URL',
  'config.REDIS_URL',
];

const URL_CREDENTIALS = /([a-z][a-z0-9+.-]*:\/\/)[^/@\s:]*(:[^/@\s]*)?@/gi;

/** Removes user:password from any URL inside a string. */
export function scrubUrlCredentials(text: string): string {
  return text.replace(URL_CREDENTIALS, '$1***@');
}

/**
 * Secrets that have a shape: interaction and webhook tokens in Discord routes (a webhook URL is
 * the token), bot tokens, `Bot …`/`Bearer …` headers, Replicate and Hugging Face tokens.
 */
const SECRET_SHAPES: [RegExp, string][] = [
  [/(\/(?:webhooks|interactions)\/\d+\/)[^/?#\s"']+/g, '$1:token'],
  [/\b[MNO][A-Za-z\d_-]{23,27}\.[A-Za-z\d_-]{6}\.[A-Za-z\d_-]{27,}/g, '[token]'],
  [/\b(Bot|Bearer)\s+[A-Za-z\d._~+/=-]{8,}/g, '$1 [token]'],
  [/\br8_[A-Za-z\d]{16,}/g, '[token]'],
  [/\bhf_[A-Za-z\d]{16,}/g, '[token]'],
  // A GPU link's join token (core/io/link.ts).
  [/\bibj1\.[a-z0-9]{16}\.[A-Za-z\d_-]{16,}/g, '[token]'],
];

/** Strips every secret this module knows the shape of, plus `known` literal secrets, from a string. */
function scrubSecrets(text: string, known: readonly string[] = []): string {
  let out = scrubUrlCredentials(text);
  for (const [re, to] of SECRET_SHAPES) out = out.replace(re, to);
  for (const s of known) if (s.length >= 6) out = out.split(s).join('[redacted]');
  return out;
}

/** Fields of an error that may be logged; everything else (request bodies, files, Buffers, URLs, commands) is left out. */
const ERROR_SCALARS = ['code', 'status', 'method', 'backend', 'kind', 'retryable', 'errno', 'syscall'] as const;

/**
 * The error serializer: an allow-list, never the error object itself. discord.js errors carry the
 * request's URL (a webhook URL holds the interaction token) and its body (image Buffers, which pino
 * would write out byte by byte); ioredis errors carry the command and its arguments; pg errors the
 * row values. What is kept: type, message and stack (secrets scrubbed), the scalar fields above,
 * the route (path only, tokens masked) and the cause, the same way, a few levels deep.
 */
function serializeError(err: unknown, known: readonly string[], depth = 0): Record<string, unknown> {
  if (!(err instanceof Error)) return { type: typeof err, message: scrubSecrets(String(err), known).slice(0, 500) };
  const e = err as Error & Record<string, unknown>;
  const out: Record<string, unknown> = { type: e.name || e.constructor?.name || 'Error', message: scrubSecrets(e.message, known) };
  for (const k of ERROR_SCALARS) {
    const v = e[k];
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean')
      out[k] = typeof v === 'string' ? scrubSecrets(v, known) : v;
  }
  if (typeof e.url === 'string') out.route = route(e.url, known);
  if (typeof e.stack === 'string') out.stack = scrubSecrets(e.stack, known);
  if (e.cause !== undefined && depth < 3) out.cause = serializeError(e.cause, known, depth + 1);
  if (err instanceof AggregateError && depth < 3) out.errors = err.errors.slice(0, 5).map((x) => serializeError(x, known, depth + 1));
  return out;
}

/** The path of a request URL, tokens masked; no host (a proxy's credentials), no query. */
function route(url: string, known: readonly string[]): string {
  let path = url;
  try {
    path = decodeURIComponent(new URL(url).pathname);
  } catch {
    path = url.split('?')[0] ?? '';
  }
  return scrubSecrets(path.replace(/^\/api(\/v\d+)?/, ''), known);
}

/**
 * The one logger factory. JSON lines; secrets redacted by path, stripped by shape from strings (the
 * message included) and, for `secrets` (the process's own tokens), wherever they appear; errors
 * through an allow-list.
 */
export function createLogger(
  opts: { level?: string; name?: string; destination?: pino.DestinationStream; secrets?: readonly (string | undefined)[] } = {},
): Logger {
  const known = (opts.secrets ?? []).filter((s): s is string => typeof s === 'string' && s.length >= 6);
  const scrub = (v: unknown) => (typeof v === 'string' ? scrubSecrets(v, known) : v);
  const options: LoggerOptions = {
    level: opts.level ?? 'info',
    base: { service: opts.name ?? 'imagebot' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    hooks: {
      logMethod(args, method) {
        for (let i = 0; i < args.length; i++) args[i] = scrub(args[i]) as never;
        method.apply(this, args as Parameters<typeof method>);
      },
    },
    formatters: {
      log(obj) {
        const out: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(obj)) out[k] = Buffer.isBuffer(v) ? `[${v.length} bytes]` : scrub(v);
        return out;
      },
    },
    serializers: { err: (err: unknown) => serializeError(err, known) },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return opts.destination ? pino(options, opts.destination) : pino(options);
}
