import { DiscordAPIError, type RawFile } from 'discord.js';
import type { LiveEdits } from '../../../bot/jobs/live-message.js';
import type { MessageBody } from '../../../bot/jobs/render.js';
import { parseImagineOptions } from '../../../core/generation.js';
import { createLogger } from '../../../core/io/logger.js';
import type { InteractionRef, StoredJob } from '../../../core/ports.js';

/** Test doubles for the outbound rooms: each records what a room asked of the world. */

export const silent = createLogger({ level: 'silent' });

export const REF: InteractionRef = { applicationId: '1111111111111111111', interactionId: '5', token: 'tok' };

export const REQUEST = parseImagineOptions({ prompt: 'a lighthouse', seed: 1 });

/** A Discord error with a JSON code, as @discordjs/rest throws it. */
export function discordError(code: number, status = 404): DiscordAPIError {
  return new DiscordAPIError({ code, message: 'Unknown Message' }, code, status, 'PATCH', '/x', { body: undefined, files: undefined });
}

/** Records every edit; `fail` makes the next edits throw, `delayMs` makes them take time. */
export function recordingEdits() {
  const sent: { at: number; route: 'original' | 'channel'; token?: string; content: string; files: string[] }[] = [];
  const o = {
    sent,
    fail: [] as unknown[],
    delayMs: 0,
    async editOriginal(ref: InteractionRef, body: MessageBody, files: RawFile[]): Promise<string> {
      if (o.delayMs) await new Promise((r) => setTimeout(r, o.delayMs));
      const err = o.fail.shift();
      if (err) throw err;
      sent.push({ at: Date.now(), route: 'original', token: ref.token, content: body.content, files: files.map((f) => f.name) });
      return 'reply-1';
    },
    async editInChannel(_channel: string, _message: string, body: MessageBody, files: RawFile[]): Promise<void> {
      const err = o.fail.shift();
      if (err) throw err;
      sent.push({ at: Date.now(), route: 'channel', content: body.content, files: files.map((f) => f.name) });
    },
  } satisfies LiveEdits & Record<string, unknown>;
  return o;
}

/** A job as the store returns it. */
export function storedJob(over: Partial<StoredJob> = {}): StoredJob {
  return {
    id: '00000000-0000-4000-8000-000000000001',
    guildId: 'g1',
    channelId: 'c1',
    userId: 'u1',
    kind: 'txt2img',
    status: 'queued',
    request: REQUEST,
    imageCount: 1,
    channelNsfw: false,
    interaction: REF,
    createdAt: new Date(Date.now()),
    startedAt: null,
    finishedAt: null,
    deliveredAt: null,
    backend: null,
    costUsd: 0,
    errorCode: null,
    errorMessage: null,
    result: null,
    replyMessageId: null,
    resultMessageId: null,
    resultExtraIds: [],
    deliveryAttempts: 0,
    ...over,
  };
}
