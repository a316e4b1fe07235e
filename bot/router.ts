import { randomBytes } from 'node:crypto';
import {
  type AutocompleteInteraction,
  type ButtonInteraction,
  type ChatInputCommandInteraction,
  type Interaction,
  MessageFlags,
  type ModalSubmitInteraction,
  type RepliableInteraction,
} from 'discord.js';
import { findCommand } from '../commands/index.js';
import { isUserError } from '../core/errors.js';
import { text } from '../core/messages.js';
import { admitButton, admitEdit, BUTTON_DEFER, openEditModal, parseButton, parseEditModal, runButton } from './buttons.js';
import type { BotDeps, CommandContext } from './context.js';
import { enqueueGeneration } from './generation.js';
import { replyPrivately } from './replies.js';

/**
 * The one InteractionCreate handler: finds the command, parses options, acknowledges at once,
 * runs the handler and turns any error into a reply. Nothing here throws.
 */
export function createRouter(deps: BotDeps): (interaction: Interaction) => Promise<void> {
  return async (interaction) => {
    if (interaction.isChatInputCommand()) await handleCommand(deps, interaction);
    else if (interaction.isAutocomplete()) await handleAutocomplete(deps, interaction);
    else if (interaction.isButton()) await handleButton(deps, interaction);
    else if (interaction.isModalSubmit()) await handleModal(deps, interaction);
  };
}

function contextFor(deps: BotDeps, interaction: Interaction): CommandContext {
  return {
    deps,
    log: deps.log.child({ interactionId: interaction.id, guildId: interaction.guildId, userId: interaction.user.id }),
  };
}

/** How long database checks may run before the reply must be deferred (Discord allows 3 s in all). */
const ADMIT_BUDGET_MS = 1200;
/** Above this many admissions in flight the bot acknowledges first: the 3 s window beats a private refusal. */
const MAX_EARLY_ADMISSIONS = 16;
let admissionsInFlight = 0;

/**
 * Waits up to the budget for `pending`: a refusal inside it is rethrown before anything is
 * acknowledged (so it can be answered privately); a slow check leaves the promise running.
 * Under a burst it does not wait at all.
 */
async function refuseEarly(pending: Promise<unknown>): Promise<void> {
  if (admissionsInFlight >= MAX_EARLY_ADMISSIONS) return;
  admissionsInFlight++;
  let timer: NodeJS.Timeout | undefined;
  const budget = new Promise<void>((resolve) => (timer = setTimeout(resolve, ADMIT_BUDGET_MS)));
  try {
    await Promise.race([pending.then(() => undefined), budget]);
  } finally {
    admissionsInFlight--;
    clearTimeout(timer);
  }
}

async function handleCommand(deps: BotDeps, interaction: ChatInputCommandInteraction): Promise<void> {
  const started = performance.now();
  const ctx = contextFor(deps, interaction);
  const command = findCommand(interaction.commandName);
  if (!command) {
    ctx.log.warn({ command: interaction.commandName }, 'unknown command');
    return;
  }
  let deferredEphemeral = false;
  try {
    const prepared = command.prepare ? command.prepare(interaction) : undefined;
    const admitted = command.admit ? command.admit(ctx, interaction, prepared) : Promise.resolve(undefined);
    admitted.catch(() => undefined); // handled below; avoids an unhandled rejection while we defer
    await refuseEarly(admitted);
    const admitWaitMs = performance.now() - started;
    deferredEphemeral = command.defer === 'ephemeral';
    await interaction.deferReply(deferredEphemeral ? { flags: MessageFlags.Ephemeral } : {});
    const ackMs = performance.now() - started;
    deps.metrics?.ackLatency.observe(ackMs / 1000);
    ctx.log.debug({ command: command.data.name, ackMs, admitWaitMs }, 'acknowledged');
    await command.execute(ctx, interaction, prepared, await admitted);
  } catch (err) {
    await answerError(ctx, interaction, err, deferredEphemeral);
  }
}

async function handleButton(deps: BotDeps, interaction: ButtonInteraction): Promise<void> {
  const ctx = contextFor(deps, interaction);
  let deferredEphemeral = false;
  try {
    const id = parseButton(interaction);
    const bctx = { ...ctx, log: ctx.log.child({ button: id.action, jobId: id.jobId }) };
    // A modal must be the first answer, so Edit is not deferred.
    if (id.action === 'edit') return await openEditModal(bctx, interaction, id);
    const admitted = admitButton(bctx, interaction, id);
    admitted.catch(() => undefined);
    await refuseEarly(admitted);
    deferredEphemeral = BUTTON_DEFER[id.action] === 'ephemeral';
    await interaction.deferReply(deferredEphemeral ? { flags: MessageFlags.Ephemeral } : {});
    await runButton(bctx, interaction, id, await admitted);
  } catch (err) {
    await answerError(ctx, interaction, err, deferredEphemeral);
  }
}

/** The Edit modal: parsed and admitted before acknowledging, then a public reply that becomes the new job's message. */
async function handleModal(deps: BotDeps, interaction: ModalSubmitInteraction): Promise<void> {
  const ctx = contextFor(deps, interaction);
  try {
    const { id, fields } = parseEditModal(interaction);
    const mctx = { ...ctx, log: ctx.log.child({ modal: id.action, jobId: id.jobId }) };
    const admitted = admitEdit(mctx, interaction, id, fields);
    admitted.catch(() => undefined);
    await refuseEarly(admitted);
    await interaction.deferReply();
    await enqueueGeneration(mctx, await admitted);
  } catch (err) {
    await answerError(ctx, interaction, err, false);
  }
}

async function answerError(
  ctx: CommandContext,
  interaction: RepliableInteraction,
  err: unknown,
  deferredEphemeral: boolean,
): Promise<void> {
  let message: string;
  if (isUserError(err)) {
    ctx.log.info({ code: err.code }, 'request refused');
    message = err.userMessage;
  } else {
    const ref = randomBytes(4).toString('hex');
    ctx.log.error({ err, ref }, 'command failed');
    message = text.genericError(ref);
  }
  try {
    await replyPrivately(interaction, message, deferredEphemeral);
  } catch (replyErr) {
    ctx.log.warn({ err: replyErr }, 'could not send the error reply');
  }
}

async function handleAutocomplete(deps: BotDeps, interaction: AutocompleteInteraction): Promise<void> {
  const ctx = contextFor(deps, interaction);
  const command = findCommand(interaction.commandName);
  try {
    if (command?.autocomplete) await command.autocomplete(ctx, interaction);
    else await interaction.respond([]);
  } catch (err) {
    ctx.log.warn({ err }, 'autocomplete failed');
  }
}
