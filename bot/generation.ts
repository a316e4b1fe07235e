import type { GenerationInteraction, GenerationService, PresetService } from '../commands/context.js';
import type { BotConfig } from '../core/config.js';
import { UserError } from '../core/errors.js';
import { type GenerationRequest, inputKeyList, type JobPayload, toJobPayload } from '../core/generation.js';
import type { BudgetReservations } from '../core/io/budget-reservations.js';
import type { Logger } from '../core/io/logger.js';
import type { ResultStore } from '../core/io/results.js';
import { admitJob } from '../core/ledger.js';
import { failureText, text } from '../core/messages.js';
import { checkRequestText, mayPostNsfw } from '../core/policy.js';
import type { Actor, JobStore } from '../core/ports.js';
import { inputRejected, NOT_ENQUEUED } from '../core/settle.js';
import type { JobLifecycle } from './jobs/lifecycle.js';
import type { SettingsStore } from './store/settings.js';

/**
 * Most time an admitted job's inputs may take to fetch and prepare: below the 30 s the sweep gives
 * a submitter before it re-enqueues a job missing from the queue.
 */
const INPUT_DEADLINE_MS = 20_000;

/** Plain ids of who asked where; the only Discord facts that cross into core/. */
function actorOf(interaction: GenerationInteraction): Actor {
  if (!interaction.guildId || !interaction.channelId) throw new UserError('not_in_guild', text.notInGuild);
  const channel = interaction.channel;
  const nsfw = channel !== null && 'nsfw' in channel ? Boolean(channel.nsfw) : false;
  return { guildId: interaction.guildId, channelId: interaction.channelId, userId: interaction.user.id, channelNsfw: nsfw };
}

export interface GenerationDeps {
  config: Pick<BotConfig, 'DEFAULT_DAILY_IMAGES' | 'DEFAULT_MONTHLY_BUDGET_USD' | 'MAX_QUEUED_PER_USER'>;
  settings: Pick<SettingsStore, 'policy'>;
  /** The admissions' store (bot/store/prisma.ts `pool`, behind the admission gate): reserving and a job's final request. */
  store: Pick<JobStore, 'reserve' | 'setRequest'>;
  /**
   * Where a job refused after admission (inputs unusable, queue unavailable) is refunded: the
   * outbound side's store (`outbound` pool), as every other settle, so a refund is not starved by
   * an admission burst holding the admissions' pool.
   */
  settles: Pick<JobStore, 'settle' | 'markDelivered'>;
  /**
   * Queues the payload where it should run (bot/jobs/admission-route.ts: the guild's own boxes or
   * the shared queue); `usedBefore` is the member's images of the last 24 hours before this job, for fairness.
   */
  enqueue: (payload: JobPayload, usedBefore: number) => Promise<unknown>;
  /** Starts what queueing will read (the guild's own boxes' status) beside admission, off the path after the acknowledgement. */
  prepareQueueing?: (guildId: string) => void;
  lifecycle: Pick<JobLifecycle, 'begin' | 'forget' | 'showQueued' | 'afterAcknowledged'>;
  presets: Pick<PresetService, 'check'>;
  /** Where a refunded job's input images, if any were stored, are dropped. */
  results: Pick<ResultStore, 'forgetInputs'>;
  /** The month's shared budget reservations, seeded (or their limit refreshed) as a job is queued. */
  budgets?: Pick<BudgetReservations, 'seedForAdmission'>;
  now: () => Date;
  log: Logger;
}

/**
 * The generation service handlers are given: the prompt rule, then the quota reservation and the
 * job row in one statement; then the queue, with the job followed from before its first event.
 */
export function createGenerationService(d: GenerationDeps): GenerationService {
  /**
   * The admitted job's input images, fetched only now (a refusal above fetched nothing). If they
   * cannot be used, or take longer than the sweep would wait before deciding the queue entry is
   * lost, the job is refunded (settled as failed, nothing to deliver) and the member told why.
   */
  async function fetchInputs(
    jobId: string,
    request: GenerationRequest,
    inputs: (request: GenerationRequest) => Promise<GenerationRequest>,
  ): Promise<GenerationRequest> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new UserError('attachment_rejected', text.inputTooSlow)), INPUT_DEADLINE_MS);
    });
    const pending = inputs(request);
    try {
      const final = await Promise.race([pending, late]);
      if (final !== request && !(await d.store.setRequest(jobId, final)))
        throw new Error('job left the queued state before its inputs were ready');
      return final;
    } catch (err) {
      d.log.info({ jobId, err }, 'input images refused after admission; refunding');
      const message = err instanceof UserError ? err.userMessage : failureText.input_rejected;
      if (await d.settles.settle(jobId, inputRejected(message))) await d.settles.markDelivered([{ jobId, messageId: null }]);
      const keys = inputKeyList(request);
      await d.results.forgetInputs(keys).catch(() => undefined);
      // Too slow: whatever it still stores once it finishes goes too.
      void pending.then(() => d.results.forgetInputs(keys)).catch(() => undefined);
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  return {
    async admit(interaction, admittedRequest, parentJobId, inputs) {
      let request = admittedRequest;
      const actor = actorOf(interaction);
      d.prepareQueueing?.(actor.guildId);
      const [policy] = await Promise.all([
        d.settings.policy(actor.guildId).catch((err: unknown) => {
          throw new UserError('database_unavailable', text.databaseUnavailable, { cause: err });
        }),
        // A preset no live backend runs is refused before anything is reserved.
        d.presets.check(request.preset),
      ]);
      const verdict = checkRequestText(request, { mode: policy.nsfwMode, channelNsfw: actor.channelNsfw, bannedWords: policy.bannedWords });
      if (!verdict.ok) {
        d.log.info({ reason: verdict.reason, guildId: actor.guildId, userId: actor.userId }, 'prompt refused by policy');
        throw new UserError('prompt_blocked', verdict.reason === 'nsfw' ? text.promptNsfw : text.promptBanned);
      }
      const ref = {
        applicationId: interaction.applicationId,
        interactionId: interaction.id,
        token: interaction.token,
        uploadLimitBytes: interaction.attachmentSizeLimit,
      };
      const { jobId, budgetLeftUsd, recentImages, budget } = await admitJob(
        {
          store: d.store,
          now: d.now,
          deploymentDailyLimit: d.config.DEFAULT_DAILY_IMAGES,
          deploymentMonthlyBudgetUsd: d.config.DEFAULT_MONTHLY_BUDGET_USD,
          maxInFlight: d.config.MAX_QUEUED_PER_USER,
        },
        actor,
        ref,
        request,
        parentJobId,
      );
      if (inputs) request = await fetchInputs(jobId, request, inputs);
      d.lifecycle.begin(jobId, actor.guildId, actor.channelId, ref, request, budgetLeftUsd > 0);
      return {
        jobId,
        actor,
        ref,
        request,
        budgetLeftUsd,
        budget,
        nsfwAllowed: mayPostNsfw({ mode: policy.nsfwMode, channelNsfw: actor.channelNsfw }),
        usedBefore: recentImages,
      };
    },

    async enqueue(a, parentLog, acknowledged, answer) {
      const log = parentLog.child({ jobId: a.jobId });
      // The job may run and finish before Discord's answer to the deferral is in: its reply waits for that answer.
      if (acknowledged) d.lifecycle.afterAcknowledged(a.jobId, acknowledged);
      const payload = toJobPayload({ jobId: a.jobId, guildId: a.actor.guildId, request: a.request }, a);
      // Seeded beside the enqueue, not before it: a worker that finds the month's hash missing seeds it from the payload.
      const seeding =
        payload.paidAllowed && a.budget
          ? d.budgets
              ?.seedForAdmission(a.actor.guildId, a.budget.month, a.budget.limitUsd, a.budget.spentUsd, d.now().getTime())
              .catch((err: unknown) => log.warn({ err }, 'could not seed the budget reservations'))
          : undefined;
      try {
        await Promise.all([d.enqueue(payload, a.usedBefore), seeding]);
      } catch (err) {
        log.warn({ err }, 'enqueue failed; refunding');
        d.lifecycle.forget(a.jobId);
        const settled = await d.settles.settle(a.jobId, NOT_ENQUEUED);
        if (settled) await d.settles.markDelivered([{ jobId: a.jobId, messageId: null }]);
        throw new UserError('queue_unavailable', text.queueUnavailable, { cause: err });
      }
      log.info({ kind: a.request.kind, count: a.request.count }, 'job queued');
      // Nothing sent yet: the place is the first answer (the reply's edits wait for it, see above).
      if (answer) return d.lifecycle.showQueued(a.jobId, answer);
      try {
        await acknowledged;
      } catch {
        // No reply to show a place in; the result is still posted (in the channel if the token is refused).
        return;
      }
      d.lifecycle.showQueued(a.jobId);
    },
  };
}
