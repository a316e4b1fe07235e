import { buttonText, modelText, ranText, text } from '../../core/messages.js';
import { isForgotten } from '../../core/ports.js';
import type { ButtonHandler } from '../command.js';
import { NO_MENTIONS, quoteUserText } from '../replies.js';
import { loadAnyJob } from './job.js';

/** Info: every parameter of the job, privately; for a forgotten job, that it was forgotten (and what the guild's totals keep). */
export const info = {
  defer: 'ephemeral',
  async execute(ctx, interaction, id) {
    const job = await loadAnyJob(ctx, interaction, id);
    if (isForgotten(job)) {
      const lines = [
        buttonText.forgottenInfo(job.forgottenReason, job.forgottenAt, ctx.config.RETENTION_DAYS),
        `**Images:** ${job.imageCount} · **Backend:** ${job.backend ?? '—'} · **Cost:** $${job.costUsd.toFixed(4)} · **Status:** ${job.status}`,
      ];
      await interaction.editReply({ content: lines.join('\n'), allowedMentions: NO_MENTIONS });
      return;
    }
    const r = job.request;
    const ran = ranText(r, job.result);
    const lines = [
      `**Prompt:** ${quoteUserText(r.prompt, 1500)}`,
      r.negative ? `**Negative:** ${quoteUserText(r.negative, 800)}` : null,
      `**Size:** ${r.width}×${r.height} · **Images:** ${r.count} · **Seed:** ${job.result?.seed ?? r.seed}`,
      `**Steps:** ${ran.steps} · **Guidance:** ${ran.guidance} · **Preset:** ${r.preset}`,
      r.strength !== undefined ? `**Strength:** ${r.strength}` : null,
      r.source
        ? `**Made from:** image ${r.source.index + 1} of job \`${r.source.jobId}\` (${r.kind === 'upscale' ? 'upscale' : 'variation'})`
        : null,
      `**Backend:** ${job.backend ?? '—'} · **Cost:** $${job.costUsd.toFixed(4)} · **Status:** ${job.status}`,
      job.model ? `**Model:** ${modelText(job.model)}${job.sampler ? ` · **Sampler:** ${job.sampler}` : ''}` : null,
      job.result?.route ? `**Route:** ${text.routedResult(job.result.route.reason, job.result.route.backend)}` : null,
    ].filter(Boolean);
    await interaction.editReply({ content: lines.join('\n').slice(0, 2000), allowedMentions: NO_MENTIONS });
  },
} satisfies ButtonHandler<undefined>;
