import { randomBytes } from 'node:crypto';
import {
  type AutocompleteInteraction,
  type ButtonInteraction,
  type Interaction,
  type MessageComponentInteraction,
  MessageFlags,
  type ModalSubmitInteraction,
  type RepliableInteraction,
} from 'discord.js';
import type { Handler } from '../commands/command.js';
import type { CommandContext } from '../commands/context.js';
import { BUTTONS, CONFIRMATIONS, findCommand, MODALS } from '../commands/index.js';
import { replyPrivately } from '../commands/replies.js';
import { decodeConfirmId, decodeCustomId } from '../core/custom-id.js';
import { isUserError, UserError } from '../core/errors.js';
import type { Logger } from '../core/io/logger.js';
import type { Metrics } from '../core/io/metrics.js';
import { buttonText, text } from '../core/messages.js';
import { awaitFirstAnswer, type PendingAnswer } from './first-answer.js';

/**
 * Whether the pressed button is one of its message's own: Discord sends the message, the client
 * only the custom id, so a modified client could send a custom id of its own job from someone
 * else's message (Delete acts on the message pressed). Buttons may sit in rows, containers or as a
 * section's accessory.
 */
function onItsMessage(interaction: ButtonInteraction): boolean {
  const wanted = interaction.customId;
  const holds = (c: unknown): boolean => {
    const x = c as { customId?: unknown; components?: unknown; accessory?: unknown } | null;
    if (!x || typeof x !== 'object') return false;
    return x.customId === wanted || (Array.isArray(x.components) && x.components.some(holds)) || holds(x.accessory);
  };
  return interaction.message.components.some(holds);
}

/** What the router builds each interaction's context from: the handlers' services, the bot's logger and metrics. */
export interface RouterDeps {
  services: Omit<CommandContext, 'log'>;
  log: Logger;
  metrics?: Metrics;
  /** Test seam: when a late first answer gives way to a deferral (default FIRST_ANSWER_DEADLINE_MS). */
  firstAnswerDeadlineMs?: number | undefined;
}

/** How long database checks may run before the reply must be deferred (Discord allows 3 s in all). */
const ADMIT_BUDGET_MS = 1200;
/** Above this many admissions in flight the bot acknowledges first: the 3 s window beats a private refusal. */
const MAX_EARLY_ADMISSIONS = 16;
/**
 * A handler answering with its own message (the job's place) has until this long after the
 * interaction arrived; then the reply is deferred after all, well inside Discord's 3 s.
 */
const FIRST_ANSWER_DEADLINE_MS = 1500;

/**
 * The one InteractionCreate handler: finds the handler (slash command by name, button or form by
 * the action in its custom id), then runs every kind through the same pipeline. Nothing here throws.
 */
export function createRouter(deps: RouterDeps): (interaction: Interaction) => Promise<void> {
  let admissionsInFlight = 0;

  /**
   * Waits up to the budget for `pending`: a refusal inside it is rethrown before anything is
   * acknowledged (so it can be answered privately); a slow check leaves the promise running.
   * Under a burst it does not wait at all. Resolves true when `pending` passed inside the budget.
   */
  async function refuseEarly(pending: Promise<unknown>): Promise<boolean> {
    if (admissionsInFlight >= MAX_EARLY_ADMISSIONS) return false;
    admissionsInFlight++;
    let timer: NodeJS.Timeout | undefined;
    let passed = false;
    const budget = new Promise<void>((resolve) => (timer = setTimeout(resolve, ADMIT_BUDGET_MS)));
    try {
      await Promise.race([
        pending.then(() => {
          passed = true;
        }),
        budget,
      ]);
      return passed;
    } finally {
      admissionsInFlight--;
      clearTimeout(timer);
    }
  }

  /**
   * parse → admit (raced against the acknowledgement budget) → defer → execute; any error becomes
   * a private reply. A handler that answers with its own message is not deferred when admission
   * passed inside the budget: its message is the first answer.
   */
  async function run<I extends RepliableInteraction, P, A>(
    interaction: I,
    bindings: Record<string, unknown>,
    parse: (ctx: CommandContext) => { handler: Handler<I, P, A>; input: P; bindings?: Record<string, unknown> },
  ): Promise<void> {
    const started = performance.now();
    let ctx: CommandContext = { ...deps.services, log: deps.log.child(bindings) };
    let deferredEphemeral = false;
    let acknowledged: Promise<void> | undefined;
    let first: PendingAnswer | undefined;
    const observeAck = (admitWaitMs: number) => () => {
      const ackMs = performance.now() - started;
      deps.metrics?.ackLatency.observe(ackMs / 1000);
      ctx.log.debug({ ackMs, admitWaitMs }, 'acknowledged');
    };
    try {
      const { handler, input, bindings: more } = parse(ctx);
      if (more) ctx = { ...ctx, log: ctx.log.child(more) };
      // A form must be the first answer, so nothing is deferred.
      if (handler.defer === 'modal') return await handler.execute(ctx, interaction, input, undefined as A, Promise.resolve());
      const admitted = handler.admit ? handler.admit(ctx, interaction, input) : Promise.resolve(undefined as A);
      admitted.catch(() => undefined); // handled below; avoids an unhandled rejection while we defer
      const passed = await refuseEarly(admitted);
      const admitWaitMs = performance.now() - started;
      if (passed && handler.answersWithMessage && handler.beforeAcknowledged && handler.defer === 'public') {
        first = awaitFirstAnswer(interaction, Math.max(0, (deps.firstAnswerDeadlineMs ?? FIRST_ANSWER_DEADLINE_MS) - admitWaitMs));
        acknowledged = first.acknowledged.then(observeAck(admitWaitMs));
        acknowledged.catch(() => undefined); // awaited below, or by the handler
        await handler.execute(ctx, interaction, input, await admitted, acknowledged, first.send);
        await acknowledged;
        return;
      }
      deferredEphemeral = handler.defer === 'ephemeral';
      acknowledged = interaction.deferReply(deferredEphemeral ? { flags: MessageFlags.Ephemeral } : {}).then(observeAck(admitWaitMs));
      acknowledged.catch(() => undefined); // awaited below, or by the handler
      // Queueing starts while Discord's answer is on its way (a network round trip in real life, on
      // every job's path to the GPU); the handler waits for it before touching the reply. One turn of
      // the event loop first, so the deferral leaves before the queueing work.
      if (!handler.beforeAcknowledged) await acknowledged;
      else await new Promise((r) => setImmediate(r));
      await handler.execute(ctx, interaction, input, await admitted, acknowledged);
      await acknowledged;
    } catch (err) {
      // Nothing sent yet: the error is the first answer, in private.
      first?.abandon();
      // An error reply edits the deferred one: only once Discord has answered the deferral.
      await acknowledged?.catch(() => undefined);
      await answerError(ctx.log, interaction, err, deferredEphemeral);
    }
  }

  /** A component or form's custom id; forged or stale ids are refused privately. */
  function decode(interaction: MessageComponentInteraction | ModalSubmitInteraction) {
    const id = decodeCustomId(interaction.customId);
    if (!id) throw new UserError('stale_button', buttonText.stale);
    return id;
  }

  return async (interaction) => {
    const bindings = { interactionId: interaction.id, guildId: interaction.guildId, userId: interaction.user.id };
    if (interaction.isChatInputCommand()) {
      const command = findCommand(interaction.commandName);
      if (!command) return deps.log.child(bindings).warn({ command: interaction.commandName }, 'unknown command');
      await run(interaction, { ...bindings, command: command.data.name }, (ctx) => ({
        handler: command,
        input: command.prepare ? command.prepare(interaction, ctx) : undefined,
      }));
    } else if (interaction.isButton()) {
      if (!onItsMessage(interaction)) {
        await run(interaction, bindings, () => {
          throw new UserError('stale_button', buttonText.stale);
        });
        return;
      }
      const confirm = decodeConfirmId(interaction.customId);
      if (confirm) {
        await run(interaction, { ...bindings, button: confirm }, () => ({ handler: CONFIRMATIONS[confirm], input: undefined as never }));
        return;
      }
      await run(interaction, bindings, () => {
        const id = decode(interaction);
        return { handler: BUTTONS[id.action], input: id, bindings: { button: id.action, jobId: id.jobId } };
      });
    } else if (interaction.isModalSubmit()) {
      await run(interaction, bindings, () => {
        const id = decode(interaction);
        const handler = MODALS[id.action];
        if (!handler) throw new UserError('stale_button', buttonText.stale);
        return { handler, input: handler.parse(interaction, id), bindings: { modal: id.action, jobId: id.jobId } };
      });
    } else if (interaction.isAutocomplete()) {
      await autocomplete(deps, interaction, bindings);
    }
  };
}

async function answerError(log: Logger, interaction: RepliableInteraction, err: unknown, deferredEphemeral: boolean): Promise<void> {
  let message: string;
  if (isUserError(err)) {
    log.info({ code: err.code }, 'request refused');
    message = err.userMessage;
  } else {
    const ref = randomBytes(4).toString('hex');
    log.error({ err, ref }, 'command failed');
    message = text.genericError(ref);
  }
  try {
    await replyPrivately(interaction, message, deferredEphemeral);
  } catch (replyErr) {
    log.warn({ err: replyErr }, 'could not send the error reply');
  }
}

async function autocomplete(deps: RouterDeps, interaction: AutocompleteInteraction, bindings: Record<string, unknown>): Promise<void> {
  const ctx: CommandContext = { ...deps.services, log: deps.log.child(bindings) };
  const command = findCommand(interaction.commandName);
  try {
    if (command?.autocomplete) await command.autocomplete(ctx, interaction);
    else await interaction.respond([]);
  } catch (err) {
    ctx.log.warn({ err }, 'autocomplete failed');
  }
}
