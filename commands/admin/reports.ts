import { STATUS_STALE_MS } from '../../core/eta.js';
import { modelText } from '../../core/messages.js';
import type { AdminHandler } from './settings.js';

const usd = (n: number) => `$${n.toFixed(4)}`;

export const stats: AdminHandler = async (ctx, i, guildId) => {
  const days = i.options.getInteger('days') ?? 7;
  const since = new Date(ctx.now().getTime() - days * 86_400_000);
  const s = await ctx.reports.guild(guildId, since);
  const chart = await ctx.reports.chart(s);
  const embed = {
    title: `Usage, last ${days} day${days === 1 ? '' : 's'}`,
    color: 0x5865f2,
    fields: [
      { name: 'Jobs', value: String(s.jobs), inline: true },
      { name: 'Images', value: String(s.images), inline: true },
      { name: 'Failures', value: String(s.failures), inline: true },
      { name: 'Cost', value: usd(s.costUsd), inline: true },
      {
        name: 'Cost by backend',
        value: s.byBackend.map((b) => `${b.backend}: ${usd(b.costUsd)} (${b.attempts} attempts)`).join('\n') || 'none',
      },
      {
        name: 'Jobs by model',
        value:
          s.byModel
            .map(
              (m) =>
                `${modelText({ name: m.model, ...(m.version ? { version: m.version } : {}) })}: ${m.jobs} jobs, ${m.images} images, ${usd(m.costUsd)}`,
            )
            .join('\n')
            .slice(0, 1024) || 'none',
      },
      { name: 'Top members', value: s.topUsers.map((u) => `<@${u.userId}>: ${u.images}`).join('\n') || 'none' },
    ],
    image: { url: 'attachment://stats.png' },
  };
  return { reply: '', embeds: [embed], files: [{ name: 'stats.png', data: chart }] };
};

export const backends: AdminHandler = async (ctx) => {
  const now = ctx.now().getTime();
  const { statuses, latency, counts } = await ctx.reports.backends(new Date(now - 86_400_000));
  const ids = [...new Set([...statuses.map((s) => s.backend), ...latency.map((l) => l.backend)])].sort();
  const fields = ids.map((id) => {
    const reports = statuses.filter((s) => s.backend === id && now - s.at < STATUS_STALE_MS);
    const l = latency.find((x) => x.backend === id);
    const healthy =
      reports.length === 0 ? '❔ no recent report' : reports.some((r) => r.healthy) ? '🟢 healthy' : `🔴 down (${reports[0]!.detail})`;
    const circuits = [...new Set(reports.map((r) => r.circuit))].join('/') || 'unknown';
    const inFlight = reports.reduce((s, r) => s + r.inFlight, 0);
    const lat = l
      ? `p50 ${l.p50s.toFixed(1)} s · p95 ${l.p95s.toFixed(1)} s · ${(l.successRate * 100).toFixed(0)} % of ${l.attempts}`
      : 'no jobs in 24 h';
    const price = reports[0]?.price ?? statuses.find((s) => s.backend === id)?.price ?? 'unknown';
    const presets = reports[0]?.presets ? `\npresets: ${Object.keys(reports[0].presets).join(', ') || 'none'}` : '';
    return { name: id, value: `${healthy} · circuit ${circuits} · running ${inFlight}\n${lat}\nprice: ${price}${presets}`.slice(0, 1024) };
  });
  const depth = (counts.waiting ?? 0) + (counts.prioritized ?? 0);
  const embed = {
    title: 'Backends',
    color: 0x5865f2,
    description: `Queue: ${depth} waiting, ${counts.active ?? 0} running, ${counts.delayed ?? 0} retrying. Latency and success over the last 24 h.`,
    fields: fields.length > 0 ? fields.slice(0, 25) : [{ name: 'No backend reports', value: 'No worker has reported in yet.' }],
  };
  return { reply: '', embeds: [embed] };
};
