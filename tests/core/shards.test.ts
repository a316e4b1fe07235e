import { describe, expect, test } from 'vitest';
import { guildShard, hearsGuild } from '../../core/shards.js';

describe('which bot process hears a guild', () => {
  // 2222222222222222222 >> 22 is even (shard 0 of 2); 2222222222226416526, 1 << 22 later, is odd (shard 1).
  const onShard0 = '2222222222222222222';
  const onShard1 = '2222222222226416526';

  test("Discord's rule: (guild id >> 22) % shard count", () => {
    expect(guildShard(onShard0, 2)).toBe(0);
    expect(guildShard(onShard1, 2)).toBe(1);
    expect(guildShard(onShard1, 1)).toBe(0);
  });

  test('a process holding every shard hears every guild; one holding shard 1 of 2 does not hear shard 0', () => {
    expect(hearsGuild(onShard0, {})).toBe(true);
    expect(hearsGuild(onShard0, { count: 2 })).toBe(true);
    expect(hearsGuild(onShard0, { count: 2, ids: [1] })).toBe(false);
    expect(hearsGuild(onShard1, { count: 2, ids: [1] })).toBe(true);
  });
});
