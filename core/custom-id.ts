import { z } from 'zod';

/**
 * Codec for component custom_ids: `<action>:<version>:<jobId>[:<index>]`, at most 100 characters.
 * Buttons carry no state beyond this; handlers reload the job, so they work after restarts and days later.
 */
export const BUTTON_ACTIONS = ['cancel', 'reroll', 'vary', 'upscale', 'edit', 'info', 'delete'] as const;
export type ButtonAction = (typeof BUTTON_ACTIONS)[number];

const VERSION = 1;
const MAX = 100;

const decodedSchema = z.object({
  action: z.enum(BUTTON_ACTIONS),
  v: z.literal(VERSION),
  jobId: z.uuid(),
  index: z.number().int().min(0).max(3).optional(),
});
export type ButtonId = z.infer<typeof decodedSchema>;

export function encodeCustomId(id: Omit<ButtonId, 'v'>): string {
  const parts = [id.action, String(VERSION), id.jobId];
  if (id.index !== undefined) parts.push(String(id.index));
  const s = parts.join(':');
  if (s.length > MAX) throw new Error(`custom_id over ${MAX} characters`);
  return s;
}

/** Parses a custom_id; null for anything forged, stale (other version) or malformed. */
export function decodeCustomId(raw: string): ButtonId | null {
  if (raw.length > MAX) return null;
  const [action, v, jobId, index, ...rest] = raw.split(':');
  if (rest.length > 0) return null;
  const parsed = decodedSchema.safeParse({
    action,
    v: Number(v),
    jobId,
    index: index === undefined ? undefined : Number(index),
  });
  return parsed.success ? parsed.data : null;
}

/**
 * Confirmation buttons that belong to no job (`/forget`'s): `confirm:<version>:<action>`. They act on
 * whoever presses them, so they carry nothing else.
 */
export const CONFIRM_ACTIONS = ['forget'] as const;
export type ConfirmAction = (typeof CONFIRM_ACTIONS)[number];

export function encodeConfirmId(action: ConfirmAction): string {
  return `confirm:${VERSION}:${action}`;
}

/** The confirmation a custom_id stands for; null for anything else. */
export function decodeConfirmId(raw: string): ConfirmAction | null {
  const [kind, v, action, ...rest] = raw.split(':');
  if (kind !== 'confirm' || v !== String(VERSION) || rest.length > 0) return null;
  return (CONFIRM_ACTIONS as readonly string[]).includes(action ?? '') ? (action as ConfirmAction) : null;
}
