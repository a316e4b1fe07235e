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

test('across two shards each job has one settler: no progress edit ever lands on a reply after its result, even when edits are held up by rate limits', async ({
  db,
  redisPrefix,
}) => {
  const guilds = guildsOnBothShards();
  sys = await System.start({
    db,
    redisPrefix,
    bot: 'none',
    a1111: { stepDelayMs: 60 },
    discord: { guilds, shards: 2 },
    env: { DISCORD_SHARD_COUNT: '2' },
  });
  sys.env.DISCORD_SHARD_IDS = '0';
  await sys.spawn('bot');
  sys.env.DISCORD_SHARD_IDS = '1';
  await sys.spawn('bot');
  const interactions = [];
  for (let round = 0; round < 2; round++) {
    for (const g of guilds) {
      const i = await sys.discord.slashCommand({
        name: 'imagine',
        options: [
          { name: 'prompt', type: 3, value: `round ${round} in ${g.name}` },
          { name: 'steps', type: 4, value: 30 },
        ],
        guildId: g.id,
        channelId: g.channels[0]!.id,
      });
      // Progress edits of the follower are held up (429) while the job finishes.
      await sys.discord.waitFor(
        () =>
          sys!.a1111.requests.some(
            (r) =>
              r.path === '/sdapi/v1/txt2img' && String((r.json as { prompt?: string })?.prompt).includes(`round ${round} in ${g.name}`),
          ),
        10_000,
      );
      sys.discord.rateLimitNext({ method: 'PATCH', pathPrefix: `/webhooks/${sys.discord.appId}/${i.token}`, count: 1, retryAfterS: 2 });
      await sys.finalReply(i, 30_000);
      interactions.push(i);
    }
  }
  await new Promise((r) => setTimeout(r, 3000));
  for (const i of interactions) {
    const landed = sys.discord.requests.filter(
      (r) => r.method === 'PATCH' && r.path === `/webhooks/${sys!.discord.appId}/${i.token}/messages/@original` && r.status === 200,
    );
    const result = landed.findIndex((r) => r.files.some((f) => f.filename.startsWith('image-')));
    expect(result).toBeGreaterThanOrEqual(0);
    expect(landed.slice(result + 1).map((r) => r.json?.content)).toEqual([]);
  }
}, 90_000);
