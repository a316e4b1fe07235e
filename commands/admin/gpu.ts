import { gpuText } from '../../core/messages.js';
import type { AdminHandler } from './settings.js';

/*
 * `/admin gpu …`: a server's own GPU box. The token is in the private reply only; the log
 * channel's notice and the audit row name the link, never the token.
 */

export const gpuLink: AdminHandler = async (ctx, i, guildId) => {
  if (!ctx.gpu.enabled) return { reply: gpuText.disabled };
  const join = await ctx.gpu.link(guildId, i.user.id);
  return { reply: gpuText.join(join, false), notice: gpuText.notice(join.linkId, 'link') };
};

export const gpuStatus: AdminHandler = async (ctx, _i, guildId) => {
  if (!ctx.gpu.enabled) return { reply: gpuText.disabled };
  const links = await ctx.gpu.status(guildId);
  return { reply: links.length === 0 ? gpuText.none : gpuText.status(links) };
};

export const gpuUnlink: AdminHandler = async (ctx, i, guildId) => {
  if (!ctx.gpu.enabled) return { reply: gpuText.disabled };
  const linkId = i.options.getString('link', true).trim();
  if (!(await ctx.gpu.unlink(guildId, i.user.id, linkId))) return { reply: gpuText.unknown(linkId) };
  return { reply: gpuText.unlinked(linkId), notice: gpuText.notice(linkId, 'unlink') };
};

export const gpuRotate: AdminHandler = async (ctx, i, guildId) => {
  if (!ctx.gpu.enabled) return { reply: gpuText.disabled };
  const linkId = i.options.getString('link', true).trim();
  const join = await ctx.gpu.rotate(guildId, i.user.id, linkId);
  if (!join) return { reply: gpuText.unknown(linkId) };
  return { reply: gpuText.join(join, true), notice: gpuText.notice(linkId, 'rotate') };
};
