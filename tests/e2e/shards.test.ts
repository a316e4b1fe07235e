import { afterEach, expect } from 'vitest';
import { shardForGuild } from '../fakes/discord/ids.js';
import type { FakeGuild } from '../fakes/discord/types.js';
import { test } from '../setup/fixtures.js';
import { System } from './harness.js';

let sys: System | undefined;
afterEach(async () => {
  await sys?.stop();
  sys = undefined;
});

/** Two guild ids that land on different shards out of two. */
function guildsOnBothShards(): FakeGuild[] {
  const ids: string[] = [];
  for (let n = 0n; ids.length < 2; n++) {
    const id = String(2222222222222222222n + (n << 22n));
    if (ids.every((x) => shardForGuild(x, 2) !== shardForGuild(id, 2))) ids.push(id);
  }
  return ids.map((id, k) => ({ id, name: `G${k}`, channels: [{ id: String(4444444444444444444n + BigInt(k)), name: 'general' }] }));
}

test('two bot processes as gateway shards 0 and 1 each answer commands in their own guild', async ({ db, redisPrefix }) => {
  const guilds = guildsOnBothShards();
  sys = await System.start({ db, redisPrefix, bot: 'none', discord: { guilds, shards: 2 }, env: { DISCORD_SHARD_COUNT: '2' } });
  sys.env.DISCORD_SHARD_IDS = '0';
  await sys.spawn('bot');
  sys.env.DISCORD_SHARD_IDS = '1';
  await sys.spawn('bot');
  expect(
    sys.discord.identifies
      .map((i) => i.d?.shard ?? i.shard)
      .map((s: number[]) => s.join('/'))
      .sort(),
  ).toEqual(['0/2', '1/2']);
  for (const g of guilds) {
    const i = await sys.discord.slashCommand({
      name: 'imagine',
      options: [
        { name: 'prompt', type: 3, value: `in ${g.name}` },
        { name: 'steps', type: 4, value: 2 },
      ],
      guildId: g.id,
      channelId: g.channels[0]!.id,
    });
    const msg = await sys.finalReply(i);
    expect(msg.attachments.some((a) => a.filename === 'image-1.png')).toBe(true);
  }
  expect(await db.prisma.job.count({ where: { status: 'succeeded' } })).toBe(2);
});
