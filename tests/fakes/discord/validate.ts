/**
 * Message limits Discord enforces (reference §11), answered with the real error shapes.
 * @module
 */
import type { RecordedFile } from './types.js';

/** What a route handler answers. */
export interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

/** A Discord JSON error reply. */
export function apiError(status: number, code: number, message: string, errors?: unknown): Reply {
  return { status, body: errors === undefined ? { message, code } : { message, code, errors } };
}

/** Common errors. */
export const ERR = {
  unauthorized: () => apiError(401, 0, '401: Unauthorized'),
  unknownMessage: () => apiError(404, 10008, 'Unknown Message'),
  unknownChannel: () => apiError(404, 10003, 'Unknown Channel'),
  unknownWebhook: () => apiError(404, 10015, 'Unknown Webhook'),
  unknownInteraction: () => apiError(404, 10062, 'Unknown interaction'),
  unknownApplication: () => apiError(404, 10002, 'Unknown Application'),
  alreadyAcked: () => apiError(400, 40060, 'Interaction has already been acknowledged.'),
  invalidWebhookToken: () => apiError(401, 50027, 'Invalid Webhook Token'),
  tooLarge: () => apiError(413, 40005, 'Request entity too large'),
  emptyMessage: () => apiError(400, 50006, 'Cannot send an empty message'),
  badBody: (message = 'Invalid Form Body') => apiError(400, 50035, message),
} as const;

interface FieldError {
  path: (string | number)[];
  code: string;
  message: string;
}

// Discord nests errors by field path: {embeds: {"0": {title: {_errors: [...]}}}}.
function formError(list: FieldError[]): Reply {
  const errors: Record<string, any> = {};
  for (const e of list) {
    let node = errors;
    for (const key of e.path) node = node[String(key)] ??= {};
    (node._errors ??= []).push({ code: e.code, message: e.message });
  }
  return apiError(400, 50035, 'Invalid Form Body', errors);
}

function maxLen(out: FieldError[], path: (string | number)[], value: unknown, max: number): void {
  if (typeof value === 'string' && value.length > max) {
    out.push({ path, code: 'BASE_TYPE_MAX_LENGTH', message: `Must be ${max} or fewer in length.` });
  }
}

function embedLength(e: any): number {
  let n = 0;
  for (const s of [e?.title, e?.description, e?.footer?.text, e?.author?.name]) n += typeof s === 'string' ? s.length : 0;
  for (const f of Array.isArray(e?.fields) ? e.fields : []) n += String(f?.name ?? '').length + String(f?.value ?? '').length;
  return n;
}

function checkEmbeds(out: FieldError[], embeds: any[]): void {
  if (embeds.length > 10) out.push({ path: ['embeds'], code: 'BASE_TYPE_MAX_LENGTH', message: 'Must be 10 or fewer in length.' });
  let total = 0;
  embeds.forEach((e, i) => {
    maxLen(out, ['embeds', i, 'title'], e?.title, 256);
    maxLen(out, ['embeds', i, 'description'], e?.description, 4096);
    maxLen(out, ['embeds', i, 'footer', 'text'], e?.footer?.text, 2048);
    maxLen(out, ['embeds', i, 'author', 'name'], e?.author?.name, 256);
    const fields = Array.isArray(e?.fields) ? e.fields : [];
    if (fields.length > 25) {
      out.push({ path: ['embeds', i, 'fields'], code: 'BASE_TYPE_MAX_LENGTH', message: 'Must be 25 or fewer in length.' });
    }
    fields.forEach((f: any, j: number) => {
      maxLen(out, ['embeds', i, 'fields', j, 'name'], f?.name, 256);
      maxLen(out, ['embeds', i, 'fields', j, 'value'], f?.value, 1024);
    });
    total += embedLength(e);
  });
  if (total > 6000) out.push({ path: ['embeds'], code: 'MAX_EMBED_SIZE_EXCEEDED', message: 'Embed size exceeds maximum size of 6000' });
}

function checkComponents(out: FieldError[], components: any[], v2: boolean): void {
  if (v2) return;
  if (components.length > 5) out.push({ path: ['components'], code: 'BASE_TYPE_MAX_LENGTH', message: 'Must be 5 or fewer in length.' });
  components.forEach((row, i) => {
    const children = Array.isArray(row?.components) ? row.components : [];
    if (children.length > 5) {
      out.push({ path: ['components', i, 'components'], code: 'BASE_TYPE_MAX_LENGTH', message: 'Must be 5 or fewer in length.' });
    }
    children.forEach((c: any, j: number) => {
      maxLen(out, ['components', i, 'components', j, 'custom_id'], c?.custom_id, 100);
      maxLen(out, ['components', i, 'components', j, 'label'], c?.label, 80);
    });
  });
}

/**
 * Validates a message create/edit body and its files.
 * @param create - creation requires a non-empty message (content, embeds, components, files…)
 */
export function validateMessage(body: any, files: RecordedFile[], sizeLimit: number, create: boolean): Reply | undefined {
  if (files.some((f) => f.data.length > sizeLimit)) return ERR.tooLarge();
  const b = body ?? {};
  const out: FieldError[] = [];
  maxLen(out, ['content'], b.content, 2000);
  if (Array.isArray(b.embeds)) checkEmbeds(out, b.embeds);
  if (Array.isArray(b.components)) checkComponents(out, b.components, ((b.flags ?? 0) & 32768) !== 0);
  if (out.length) return formError(out);
  if (create) {
    const has =
      (typeof b.content === 'string' && b.content.length > 0) ||
      (Array.isArray(b.embeds) && b.embeds.length > 0) ||
      (Array.isArray(b.components) && b.components.length > 0) ||
      (Array.isArray(b.sticker_ids) && b.sticker_ids.length > 0) ||
      b.poll != null ||
      files.length > 0;
    if (!has) return ERR.emptyMessage();
  }
  return undefined;
}
