import type { RepliableInteraction } from 'discord.js';
import type { FirstAnswer, ReplyBody } from '../commands/context.js';

/** The interaction's first answer, given by its handler's message, or by a deferral if that message is late. */
export interface PendingAnswer {
  /** Settles once Discord has the first answer (the message, or the deferral); rejects if it refused it. */
  readonly acknowledged: Promise<void>;
  /** For the handler: sends its message as the first answer; `'deferred'` if the deadline came first (nothing sent). */
  readonly send: FirstAnswer;
  /**
   * The handler failed before answering: nothing more is sent from here (no deferral at the
   * deadline), so its error can be the first answer, in private.
   */
  abandon(): void;
}

const optionsOf = (body: ReplyBody) => ({
  content: body.content,
  embeds: body.embeds,
  components: body.components,
  allowedMentions: body.allowed_mentions,
});

/**
 * Waits for the handler's first message instead of deferring at once. Discord must hear
 * something within 3 s of the interaction: at `deadlineMs` from now, if the message has not
 * gone, the reply is deferred after all and the message is left to the reply's edits.
 */
export function awaitFirstAnswer(interaction: RepliableInteraction, deadlineMs: number): PendingAnswer {
  let state: 'waiting' | 'deferred' | 'answered' | 'abandoned' = 'waiting';
  let settle!: { resolve: () => void; reject: (err: unknown) => void };
  const acknowledged = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  const timer = setTimeout(() => {
    if (state !== 'waiting') return;
    state = 'deferred';
    interaction.deferReply().then(() => settle.resolve(), settle.reject);
  }, deadlineMs);
  return {
    acknowledged,
    async send(body) {
      if (state === 'abandoned') return undefined;
      // The reply's edits, in their one order, show the message: sent from here it could overtake the result.
      if (state === 'deferred') return 'deferred';
      state = 'answered';
      clearTimeout(timer);
      try {
        const response = await interaction.reply({ ...optionsOf(body), withResponse: true });
        settle.resolve();
        return response.resource?.message?.id;
      } catch (err) {
        settle.reject(err);
        throw err;
      }
    },
    abandon() {
      if (state !== 'waiting') return;
      state = 'abandoned';
      clearTimeout(timer);
      settle.resolve();
    },
  };
}
