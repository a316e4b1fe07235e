/**
 * Snowflakes, tokens and well-known defaults of the fake Discord.
 * @module
 */
import { randomBytes } from 'node:crypto';
import type { FakeGuild, FakeUser } from './types.js';

const DISCORD_EPOCH = 1420070400000n;
let increment = 0n;

/** A fresh, realistic snowflake (timestamp-based, so `createdTimestamp` is "now"). */
export function snowflake(at: number = Date.now()): string {
  increment = (increment + 1n) & 0xfffn;
  return (((BigInt(at) - DISCORD_EPOCH) << 22n) | (1n << 17n) | increment).toString();
}

/** Interaction token shaped like Discord's (base64url, ~150 chars). */
export function interactionToken(id: string): string {
  return Buffer.from(`interaction:${id}:`).toString('base64url') + randomBytes(90).toString('base64url');
}

/** Gateway shard owning a guild: `(id >> 22) % shardCount`. */
export function shardForGuild(guildId: string, shardCount: number): number {
  return Number((BigInt(guildId) >> 22n) % BigInt(shardCount));
}

/** Permission presets (bigint decimal strings). */
export const PERMS = {
  /** Plain member: view/send/attach/embed/use commands…, no ManageGuild. */
  member: '2248473465835073',
  /** Plain member plus ManageGuild (1 << 5). */
  manager: (2248473465835073n | (1n << 5n)).toString(),
  /** Administrator (1 << 3). */
  admin: (2248473465835073n | (1n << 3n) | (1n << 5n)).toString(),
  /** `@everyone` role default. */
  everyone: '1071698660929',
} as const;

/** Ids used by the default fixtures. */
export const DEFAULTS = {
  appId: '1111111111111111111',
  token: 'fake-token',
  guildId: '2222222222222222222',
  generalChannelId: '4444444444444444444',
  nsfwChannelId: '5555555555555555555',
  ownerId: '3000000000000000003',
} as const;

/** The default interaction user. */
export const DEFAULT_USER: FakeUser = { id: '3333333333333333333', username: 'alice', globalName: 'Alice' };

/** The default guild list. */
export function defaultGuilds(): FakeGuild[] {
  return [
    {
      id: DEFAULTS.guildId,
      name: 'Test Guild',
      channels: [
        { id: DEFAULTS.generalChannelId, name: 'general', nsfw: false },
        { id: DEFAULTS.nsfwChannelId, name: 'nsfw-art', nsfw: true },
      ],
    },
  ];
}

/** The 10 MiB default per-file limit. */
export const DEFAULT_ATTACHMENT_LIMIT = 10 * 1024 * 1024;

/** Wall-clock ms with a fraction: benchmarks subtract these stamps, and whole milliseconds hide the gains they look for. */
export function preciseNow(): number {
  return performance.timeOrigin + performance.now();
}
