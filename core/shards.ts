/**
 * Discord's rule for which gateway shard carries a guild's events: (guild id >> 22) % shard count.
 * https://discord.com/developers/docs/events/gateway#sharding
 */
export function guildShard(guildId: string, shardCount: number): number {
  return Number((BigInt(guildId) >> 22n) % BigInt(shardCount));
}

/**
 * Whether a bot process hears a guild's events: every guild when it holds all shards (no shard ids
 * given), else the guilds its shards carry.
 */
export function hearsGuild(guildId: string, shards: { count?: number | undefined; ids?: readonly number[] | undefined }): boolean {
  if (!shards.ids || !shards.count) return true;
  return shards.ids.includes(guildShard(guildId, shards.count));
}
