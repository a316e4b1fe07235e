import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { afterEach, expect } from 'vitest';
import { test } from '../setup/fixtures.js';
import { emptyCwd, sourceEntryArgs } from '../setup/processes.js';
import { System } from './harness.js';

const run = promisify(execFile);

let sys: System | undefined;
afterEach(async () => {
  await sys?.stop();
  sys = undefined;
});

test('SIGTERM on a worker mid-job: it exits promptly, hands the job back, and another worker finishes it once', async ({
  db,
  redisPrefix,
}) => {
  sys = await System.start({ db, redisPrefix, worker: 'none', a1111: { stepDelayMs: 100 } });
  const first = await sys.spawn('worker');
  const i = await sys.imagine({ prompt: 'handed back', steps: 30 });
  await sys.discord.waitFor(() => sys!.a1111.requests.some((r) => r.path === '/sdapi/v1/txt2img'), 10_000);
  const t0 = Date.now();
  first.child.kill('SIGTERM');
  expect(await first.exited).toBe(0);
  expect(Date.now() - t0).toBeLessThan(5000);
  expect(sys.a1111.interrupts).toBeGreaterThanOrEqual(1);
  await sys.spawn('worker');
  const msg = await sys.finalReply(i, 30_000);
  expect(msg.attachments.some((a) => a.filename === 'image-1.png')).toBe(true);
  expect((await db.prisma.memberUsage.findFirstOrThrow()).images).toBe(1);
});

test('SIGTERM on the bot: it exits cleanly within the grace period, and the job it was following is still delivered once', async ({
  db,
  redisPrefix,
}) => {
  sys = await System.start({ db, redisPrefix, bot: 'none', a1111: { stepDelayMs: 100 } });
  const bot = await sys.spawn('bot');
  const i = await sys.imagine({ prompt: 'bot restarts', steps: 20 });
  await sys.discord.waitFor(() => i.original()?.content.includes('Queued'));
  const t0 = Date.now();
  bot.child.kill('SIGTERM');
  expect(await bot.exited).toBe(0);
  expect(Date.now() - t0).toBeLessThan(20_000);
  await sys.spawn('bot');
  const msg = await sys.finalReply(i, 30_000);
  expect(msg.attachments.some((a) => a.filename === 'image-1.png')).toBe(true);
  expect((await db.prisma.memberUsage.findFirstOrThrow()).images).toBe(1);
});

// In the image node is PID 1 (exec-form CMD, no init): Linux drops a signal PID 1 has no handler
// for, so `docker stop` on a process still starting would wait out the grace period. Run as PID 1
// when we may (root), else as an ordinary child, where a missing handler shows as death by signal.
test('SIGTERM on a worker still starting (Redis unreachable): it exits cleanly at once, and the outage is logged as JSON, not raw ioredis traces', async () => {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(
      (e): e is [string, string] =>
        e[1] !== undefined && !/^(DISCORD_|A1111_|BACKENDS|COMFYUI_|REPLICATE_|HF_|DATABASE_URL|REDIS_URL|QUEUE_PREFIX)/.test(e[0]),
    ),
  );
  Object.assign(env, { A1111_URL: 'http://127.0.0.1:1', REDIS_URL: 'redis://127.0.0.1:1', NSFW_CLASSIFIER: 'off' });
  const asPid1 = process.getuid?.() === 0;
  const node = [process.execPath, ...sourceEntryArgs('worker/main.ts')];
  const child = asPid1
    ? spawn('unshare', ['-fp', '--mount-proc', ...node], { cwd: emptyCwd(), env, stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(node[0]!, node.slice(1), { cwd: emptyCwd(), env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  try {
    await new Promise((r) => setTimeout(r, 4000));
    const target = asPid1 ? Number((await run('pgrep', ['-P', String(child.pid)])).stdout.trim().split('\n')[0]) : child.pid!;
    process.kill(target, 'SIGTERM');
    const code = await Promise.race([exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 8000))]);
    expect(code).toBe(0);
    expect(stderr).not.toContain('Unhandled error event');
    expect(stdout).toMatch(/"level":40.*Redis|Redis.*"level":40/);
  } finally {
    if (child.exitCode === null) {
      const { stdout: kids } = await run('pgrep', ['-P', String(child.pid)]).catch(() => ({ stdout: '' }));
      for (const p of kids.trim().split('\n').filter(Boolean)) process.kill(Number(p), 'SIGKILL');
      child.kill('SIGKILL');
    }
  }
}, 30_000);
