import { DiscordAPIError, HTTPError, type RawFile, type REST, Routes } from 'discord.js';
import type { DeliveryFailure } from '../../core/delivery.js';
import type { Logger } from '../../core/io/logger.js';
import { text } from '../../core/messages.js';
import type { InteractionRef, StoredJob } from '../../core/ports.js';
import { bodyWithFiles } from './multipart.js';
import type { MessageBody } from './render.js';

/** Discord errors meaning the interaction reply can no longer be edited; the channel gets a new message instead. */
const GONE_CODES = new Set([10008, 10015, 10062, 50027]);

/**
 * What an error from Discord means for a job's message; every room that talks to Discord asks
 * here. `gone`: the reply (or its token) no longer exists, so a result goes to the channel and
 * position edits stop; `refused`: Discord said no for good (any other 4xx but 429: missing access
 * or permissions, unknown channel, a form it will never take), so asking again the same way is
 * pointless; `failed`: a reason that may pass (5xx, network), tried again later.
 */
export type DiscordAnswer = 'gone' | 'refused' | 'failed';

export function discordAnswer(err: unknown): DiscordAnswer {
  if (!(err instanceof DiscordAPIError)) return 'failed';
  if (typeof err.code === 'number' && GONE_CODES.has(err.code)) return 'gone';
  return err.status >= 400 && err.status < 500 && err.status !== 429 ? 'refused' : 'failed';
}

/** A failed post of a result, for the retry rule (core/delivery.ts): a gone reply with no fallback left is refused too. */
export function deliveryFailure(err: unknown): DeliveryFailure {
  return discordAnswer(err) === 'failed' ? 'failed' : 'refused';
}

/** Discord's answer in a few words, for the job's row and the moderators: "403 50013 Missing Permissions". */
export function describeDiscordError(err: unknown): string {
  if (err instanceof DiscordAPIError) return `${err.status} ${err.code} ${err.message.split('\n')[0]}`.slice(0, 200);
  if (err instanceof HTTPError) return `${err.status} ${err.name}`;
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? `network ${code}` : 'network error';
}

/**
 * The ways a job's messages reach Discord: the interaction reply and its follow-ups while the
 * token lives, then channel messages with the bot's token (nonce-deduplicated, replying to the
 * original, mentioning only the requester).
 */
export class Outbox {
  constructor(
    private readonly o: {
      /** Webhook routes (reply edits, follow-ups), no bot token. */
      rest: REST;
      /** Bot-token routes, under the global limit. */
      botRest: REST;
      log: Logger;
      now: () => number;
      tokenLifetimeMs: number;
    },
  ) {}

  tokenAlive(job: StoredJob): boolean {
    return this.o.now() - job.createdAt.getTime() < this.o.tokenLifetimeMs;
  }

  /** Edits the interaction reply (`@original`); returns its message id. */
  async editOriginal(ref: InteractionRef, body: MessageBody, files: RawFile[]): Promise<string> {
    const msg = (await this.o.rest.patch(Routes.webhookMessage(ref.applicationId, ref.token, '@original'), {
      ...bodyWithFiles(body, files),
      auth: false,
    })) as { id: string };
    return msg.id;
  }

  /** Edits a message of the bot's in a channel with its own token (the reply, once its token is gone). */
  async editInChannel(channelId: string, messageId: string, body: MessageBody, files: RawFile[]): Promise<void> {
    await this.o.botRest.patch(Routes.channelMessage(channelId, messageId), bodyWithFiles(body, files));
  }

  /**
   * Edits the interaction reply while its token lives (idempotent: a repeat edit changes nothing);
   * afterwards posts in the channel with a nonce Discord deduplicates, mentioning only the requester.
   */
  async send(job: StoredJob, body: MessageBody, files: RawFile[]): Promise<{ id: string; inChannel: false | 'gone' | 'expired' }> {
    if (this.tokenAlive(job)) {
      try {
        return { id: await this.editOriginal(job.interaction, body, files), inChannel: false };
      } catch (err) {
        if (discordAnswer(err) !== 'gone') throw err;
        this.o.log.info({ jobId: job.id, code: (err as DiscordAPIError).code }, 'reply gone; posting in channel');
        return { id: await this.postInChannel(job, body, files, 0), inChannel: 'gone' };
      }
    }
    return { id: await this.postInChannel(job, body, files, 0), inChannel: 'expired' };
  }

  /** Follow-up `n` (1-based) of a result split over several messages: a webhook follow-up while the token lives, else a channel post. */
  async sendMore(job: StoredJob, body: MessageBody, files: RawFile[], n: number, inChannel: boolean): Promise<string> {
    if (!inChannel && this.tokenAlive(job)) {
      try {
        const msg = (await this.o.rest.post(Routes.webhook(job.interaction.applicationId, job.interaction.token), {
          ...bodyWithFiles(body, files),
          auth: false,
          query: new URLSearchParams({ wait: 'true' }),
        })) as { id: string };
        return msg.id;
      } catch (err) {
        if (discordAnswer(err) !== 'gone') throw err;
      }
    }
    return this.postInChannel(job, body, files, n);
  }

  /**
   * After a late result went to the channel, the old reply still shows its last progress and a
   * Cancel button: turn it into a pointer to the result (bot token; the reply is the bot's message),
   * saying what `outcome` the message posted tells.
   */
  async pointToResult(job: StoredJob, replyId: string, resultId: string, outcome: Parameters<typeof text.resultBelow>[0]): Promise<void> {
    const url = `https://discord.com/channels/${job.guildId}/${job.channelId}/${resultId}`;
    try {
      await this.o.botRest.patch(Routes.channelMessage(job.channelId, replyId), {
        body: { content: text.resultBelow(outcome, url), embeds: [], components: [], attachments: [], allowed_mentions: { parse: [] } },
      });
    } catch (err) {
      // Cosmetic: the result itself is posted; a reply deleted meanwhile is fine.
      this.o.log.debug({ err, jobId: job.id }, 'could not point the old reply at the result');
    }
  }

  /** A channel message with the bot's token; the nonce makes a retried post land once. */
  private async postInChannel(job: StoredJob, body: MessageBody, files: RawFile[], part: number): Promise<string> {
    const hex = job.id.replaceAll('-', '');
    const nonce = part === 0 ? hex.slice(0, 25) : `${hex.slice(0, 22)}p${part}`;
    const payload = {
      ...body,
      content: `<@${job.userId}> ${body.content}`.trim(),
      allowed_mentions: { parse: [], users: [job.userId] },
      ...(job.replyMessageId ? { message_reference: { message_id: job.replyMessageId, fail_if_not_exists: false } } : {}),
      nonce,
      enforce_nonce: true,
    };
    const posted = (await this.o.botRest.post(Routes.channelMessages(job.channelId), bodyWithFiles(payload, files))) as { id: string };
    return posted.id;
  }
}
