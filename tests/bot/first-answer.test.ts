import type { RepliableInteraction } from 'discord.js';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { awaitFirstAnswer } from '../../bot/first-answer.js';

/** Discord's side of one interaction, as discord.js exposes it: what was sent, in order. */
function interaction(o: { replyFails?: boolean } = {}) {
  const sent: string[] = [];
  const stub = {
    deferReply: vi.fn(async () => {
      sent.push('defer');
    }),
    reply: vi.fn(async (opts: { content: string; withResponse?: boolean }) => {
      if (o.replyFails) throw new Error('Unknown interaction');
      sent.push(`reply:${opts.content}:${opts.withResponse === true}`);
      return { resource: { message: { id: 'reply-1' } } };
    }),
  };
  return { sent, i: stub as unknown as RepliableInteraction };
}

const body = (content: string) => ({ content, embeds: [], components: [], allowed_mentions: { parse: [] as [] } });

describe("an interaction's first answer (bot/first-answer.ts)", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('is the message when it comes before the deadline: one request, no deferral, and its id', async () => {
    const { sent, i } = interaction();
    const first = awaitFirstAnswer(i, 2000);
    await expect(first.send(body('Queued: you are next.'))).resolves.toBe('reply-1');
    await first.acknowledged;
    await vi.advanceTimersByTimeAsync(5000);
    expect(sent).toEqual(['reply:Queued: you are next.:true']);
  });

  it('is a deferral at the deadline when the message is late; the message is then left to the reply’s edits', async () => {
    const { sent, i } = interaction();
    const first = awaitFirstAnswer(i, 2000);
    await vi.advanceTimersByTimeAsync(1999);
    expect(sent).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    await first.acknowledged;
    // Sent from here, a late place could overtake the result on the reply; the caller edits in turn instead.
    await expect(first.send(body('Queued: position 3.'))).resolves.toBe('deferred');
    expect(sent).toEqual(['defer']);
  });

  it('sends nothing once abandoned (the handler failed): its error can be the first answer, in private', async () => {
    const { sent, i } = interaction();
    const first = awaitFirstAnswer(i, 2000);
    first.abandon();
    await first.acknowledged;
    await vi.advanceTimersByTimeAsync(5000);
    await expect(first.send(body('late'))).resolves.toBeUndefined();
    expect(sent).toEqual([]);
  });

  it('rejects `acknowledged` when Discord refuses the message, and sends no deferral after it', async () => {
    const { sent, i } = interaction({ replyFails: true });
    const first = awaitFirstAnswer(i, 2000);
    const acknowledged = first.acknowledged.then(
      () => 'ok',
      (err: Error) => err.message,
    );
    await expect(first.send(body('Queued'))).rejects.toThrow('Unknown interaction');
    expect(await acknowledged).toBe('Unknown interaction');
    await vi.advanceTimersByTimeAsync(5000);
    expect(sent).toEqual([]);
  });
});
