import { afterEach, expect } from 'vitest';
import { test } from '../setup/fixtures.js';
import { ALICE, BOB, System } from './harness.js';

let sys: System | undefined;
afterEach(async () => {
  await sys?.stop();
  sys = undefined;
});

test('a long queue serves the member who has had the least first: one batch never starves another member', async ({ db, redisPrefix }) => {
  sys = await System.start({ db, redisPrefix, worker: 'none', env: { MAX_QUEUED_PER_USER: '10' } });
  const alice = [];
  for (let n = 1; n <= 4; n++) {
    const i = await sys.imagine({ prompt: `alice ${n}`, steps: 2, user: ALICE });
    // Admitted in order, so her usage grows 0, 1, 2, 3. Her job's row, not the first answer: a slow
    // admission is acknowledged (deferred) before it has reserved anything.
    await sys.discord.waitForAsync(async () => (await db.prisma.job.count()) === n || undefined);
    alice.push(i);
  }
  const bob = await sys.imagine({ prompt: 'bob 1', steps: 2, user: BOB });
  await bob.waitForCallback();
  await sys.discord.waitForAsync(async () => (await db.prisma.job.count()) === 5 || undefined);
  await sys.startWorker();
  await Promise.all([...alice, bob].map((i) => sys!.finalReply(i)));
  const order = sys.a1111.requests.filter((r) => r.path === '/sdapi/v1/txt2img').map((r) => (r.json as { prompt: string }).prompt);
  // Bob had nothing today, so his first job goes ahead of Alice's second, third and fourth.
  expect(order).toEqual(['alice 1', 'bob 1', 'alice 2', 'alice 3', 'alice 4']);
});
