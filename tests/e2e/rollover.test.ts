import { afterEach, expect } from 'vitest';
import { test } from '../setup/fixtures.js';
import { System } from './harness.js';

let sys: System | undefined;
afterEach(async () => {
  await sys?.stop();
  sys = undefined;
});

test('daily quotas roll over at UTC midnight (injected clock), and the refusal says when', async ({ db, redisPrefix }) => {
  let clock = new Date('2026-11-23T23:58:30Z');
  sys = await System.start({ db, redisPrefix, env: { DEFAULT_DAILY_IMAGES: '1' }, botOverrides: { now: () => clock } });
  await sys.finalReply(await sys.imagine({ prompt: 'before midnight', steps: 2 }));
  const refused = await sys.imagine({ prompt: 'one too many', steps: 2 });
  const seen = await sys.answerOf(refused);
  expect(seen.flags & 64).toBe(64);
  expect(seen.content).toContain('You have used 1 of your 1 images today');
  expect(seen.content).toContain('reset at 00:00 UTC (in 2 min)');
  clock = new Date('2026-11-24T00:00:05Z');
  const after = await sys.imagine({ prompt: 'after midnight', steps: 2 });
  const msg = await sys.finalReply(after);
  expect(msg.attachments.some((a) => a.filename === 'image-1.png')).toBe(true);
  const usage = await db.prisma.memberUsage.findFirstOrThrow();
  expect(usage.images).toBe(1);
  expect(usage.day.toISOString().slice(0, 10)).toBe('2026-11-24');
});
