import { afterEach, expect } from 'vitest';
import { test } from '../setup/fixtures.js';
import { System } from './harness.js';

let sys: System | undefined;
afterEach(async () => {
  await sys?.stop();
  sys = undefined;
});

test('a worker whose classifier computes on the CPU (no WebAssembly) keeps its job: the job lock is renewed and no second worker runs it again', async ({
  db,
  redisPrefix,
}) => {
  // A short lock makes the old failure quick to show: a loop blocked past it looked like a dead worker.
  // The classifier on TensorFlow.js's pure-JS CPU backend, as where WebAssembly fails to load: about a second per image.
  sys = await System.start({
    db,
    redisPrefix,
    worker: 'none',
    env: { NSFW_CLASSIFIER: 'cpu', JOB_LOCK_MS: '1000', STALLED_CHECK_MS: '500' },
  });
  await sys.spawn('worker');
  const i = await sys.imagine({ prompt: 'classified slowly', steps: 2, count: 2 });
  await sys.discord.waitFor(() => sys!.a1111.requests.some((r) => r.path === '/sdapi/v1/txt2img'), 30_000);
  await sys.spawn('worker');
  const msg = await sys.finalReply(i, 150_000);
  expect(msg.attachments.filter((a) => a.filename.startsWith('image-'))).toHaveLength(2);
  await new Promise((r) => setTimeout(r, 2000));
  expect(sys.a1111.requests.filter((r) => r.path === '/sdapi/v1/txt2img')).toHaveLength(1);
}, 240_000);
