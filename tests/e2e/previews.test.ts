import { afterEach, expect } from 'vitest';
import { fixedClassifier } from '../../worker/safety/classifier.js';
import type { FakeInteraction } from '../fakes/discord/types.js';
import { test } from '../setup/fixtures.js';
import { System } from './harness.js';

let sys: System | undefined;
afterEach(async () => {
  await sys?.stop();
  sys = undefined;
});

/** Every preview image the bot attached to a job's reply while it ran. */
function previewsShown(s: System, i: FakeInteraction): Buffer[] {
  return s.discord.requests
    .filter((r) => r.method === 'PATCH' && r.path.includes(`/${i.token}/messages/@original`))
    .flatMap((r) => r.files.filter((f) => f.filename === 'preview.png').map((f) => f.data));
}

/**
 * A job of about 4 s on a box that sends a preview at every step, in an ordinary channel of a
 * strict guild (the default), with a classifier scoring every image `score`. It stands in for
 * nsfwjs, which scores real pictures: the fake box cannot draw one nsfwjs would flag.
 */
async function run(db: { url: string }, redisPrefix: string, score: number) {
  sys = await System.start({ db, redisPrefix, a1111: { stepDelayMs: 100 }, workerOverrides: { classifier: fixedClassifier(score) } });
  const i = await sys.imagine({ prompt: 'a statue in a park', steps: 40 });
  const final = await sys.finalReply(i, 30_000);
  return { i, final, shown: previewsShown(sys, i) };
}

test('a strict guild, a classifier that flags every image: the member’s reply never carries a preview, and the result is held back', async ({
  db,
  redisPrefix,
}) => {
  const { final, shown } = await run(db, redisPrefix, 0.99);
  // The box did send previews all along; none reached the member.
  expect(sys!.a1111.requests.filter((r) => r.path === '/sdapi/v1/progress').length).toBeGreaterThan(5);
  expect(shown).toEqual([]);
  expect(final.content).toContain('flagged as NSFW');
  expect(final.attachments).toEqual([]);
});

test('a strict guild, a classifier that passes every image: previews are shown while the job runs', async ({ db, redisPrefix }) => {
  const { final, shown } = await run(db, redisPrefix, 0.01);
  expect(shown.length).toBeGreaterThan(0);
  expect(final.attachments.some((a) => a.filename === 'image-1.png')).toBe(true);
});
