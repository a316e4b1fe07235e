import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import type { JobPayload } from '../../core/generation.js';

/**
 * The seal the bot puts on every job it queues on a guild's own queue. That queue's worker is the
 * guild's, not the operator's: its Redis user may write any job there, so the handoff moves to the
 * shared queue only a payload this seal proves the bot wrote, unaltered, with the member's usage
 * the bot saw (its priority there). The key is derived from DISCORD_TOKEN, which every bot process
 * has and no worker ever gets.
 */
export class JobSealer {
  private readonly key: Buffer;

  constructor(secret: string) {
    this.key = Buffer.from(hkdfSync('sha256', secret, '', 'imagine-bot guild-queue job seal v1', 32));
  }

  seal(payload: JobPayload, usedBefore: number): JobPayload {
    const { seal: _old, ...rest } = payload;
    return { ...rest, seal: { usedBefore, mac: this.mac(rest, usedBefore) } };
  }

  /**
   * The member's usage before the job if `data` (a job's data as read back from Redis) carries the
   * bot's seal over exactly this content; null otherwise.
   */
  verify(data: unknown): number | null {
    if (typeof data !== 'object' || data === null) return null;
    const { seal, ...rest } = data as Record<string, unknown>;
    if (typeof seal !== 'object' || seal === null) return null;
    const { usedBefore, mac } = seal as Record<string, unknown>;
    if (typeof usedBefore !== 'number' || !Number.isSafeInteger(usedBefore) || usedBefore < 0 || typeof mac !== 'string') return null;
    const want = Buffer.from(this.mac(rest, usedBefore), 'hex');
    const got = Buffer.from(mac, 'hex');
    return got.length === want.length && timingSafeEqual(got, want) ? usedBefore : null;
  }

  private mac(content: unknown, usedBefore: number): string {
    return createHmac('sha256', this.key).update(canonical({ content, usedBefore })).digest('hex');
  }
}

/** JSON as Redis gives it back (undefined dropped), keys sorted at every level, so both sides hash the same bytes. */
function canonical(value: unknown): string {
  return JSON.stringify(sorted(JSON.parse(JSON.stringify(value))));
}

function sorted(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sorted);
  if (typeof v !== 'object' || v === null) return v;
  const o = v as Record<string, unknown>;
  return Object.fromEntries(
    Object.keys(o)
      .sort()
      .map((k) => [k, sorted(o[k])]),
  );
}
