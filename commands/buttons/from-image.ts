import type { ButtonInteraction } from 'discord.js';
import type { ButtonId } from '../../core/custom-id.js';
import type { GenerationRequest } from '../../core/generation.js';
import { type SourceImage, upscaleRequest, variationRequest } from '../../core/result-actions.js';
import type { ButtonHandler } from '../command.js';
import type { Admitted, CommandContext } from '../context.js';
import { finishedResult, loadJob, newSeed, postedImageUrl } from './job.js';

/**
 * Vary and Upscale start from one posted image. The job is admitted (policy, quota, in-flight)
 * before anything is fetched, so a refused button costs no download and stores nothing; the
 * image is then read back from the message the button sits on (Discord keeps it as long as the message lives; our copy in Redis is gone after
 * delivery). Anyone may press them: the new job is the presser's, on the presser's quota.
 */
function fromPostedImage(build: (source: SourceImage) => GenerationRequest): ButtonHandler<Admitted> {
  return {
    defer: 'public',
    async admit(ctx: CommandContext, interaction: ButtonInteraction, id: ButtonId) {
      const job = await loadJob(ctx, interaction, id);
      const source = { jobId: job.id, request: job.request, result: finishedResult(job), index: id.index ?? 0 };
      const url = postedImageUrl(interaction, source.index);
      const { image } = ctx.inputs.keys();
      return ctx.generation.admit(interaction, { ...build(source), inputKeys: { image } }, job.id, async (request) => {
        await ctx.inputs.postedImage(url, image);
        return request;
      });
    },
    beforeAcknowledged: true,
    answersWithMessage: true,
    execute: (ctx, _interaction, _id, admitted, acknowledged, answer) => ctx.generation.enqueue(admitted, ctx.log, acknowledged, answer),
  };
}

/** Vary / V1…V4: an img2img variation of that image, with a new seed. */
export const vary = fromPostedImage((source) => variationRequest(source, newSeed()));

/** Upscale / U1…U4: that image at twice the size (capped). */
export const upscale = fromPostedImage((source) => upscaleRequest(source));
