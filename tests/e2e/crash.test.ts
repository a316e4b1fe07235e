import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { afterEach, describe, expect } from 'vitest';
import { test } from '../setup/fixtures.js';
import { emptyCwd, sourceEntryArgs } from '../setup/processes.js';
import { System } from './harness.js';

let sys: System | undefined;
afterEach(async () => {
  await sys?.stop();
  sys = undefined;
});

async function chargedImages(db: { prisma: { memberUsage: { findFirstOrThrow(): Promise<{ images: number }> } } }) {
  return (await db.prisma.memberUsage.findFirstOrThrow()).images;
}

describe('crashes and restarts', () => {
  test('a worker killed with SIGKILL mid-job is recovered in seconds: one result message, one charge', async ({ db, redisPrefix }) => {
    sys = await System.start({ db, redisPrefix, worker: 'none', a1111: { stepDelayMs: 100 } });
    const first = await sys.spawn('worker');
    const i = await sys.imagine({ prompt: 'survives a crash', steps: 15, count: 2 });
    await sys.discord.waitFor(() => sys!.a1111.requests.some((r) => r.path === '/sdapi/v1/txt2img'), 10_000);
    first.child.kill('SIGKILL');
    await first.exited;
    const killedAt = Date.now();
    await sys.spawn('worker');
    const msg = await sys.finalReply(i, 30_000);
    expect(Date.now() - killedAt).toBeLessThan(15_000);
    expect(msg.attachments.filter((a) => a.filename.startsWith('image-'))).toHaveLength(2);
    // Exactly one result: the reply was turned into the result once and nothing else was posted.
    await new Promise((r) => setTimeout(r, 1500));
    const resultPosts = sys.discord.requests.filter((r) => r.files.some((f) => f.filename.startsWith('image-')));
    expect(resultPosts).toHaveLength(1);
    const withImages = sys.discord
      .channelMessages('4444444444444444444')
      .filter((m) => m.attachments.some((a) => a.filename.startsWith('image-')));
    expect(withImages).toHaveLength(1);
    expect(await chargedImages(db)).toBe(2);
    const job = await db.prisma.job.findFirstOrThrow();
    expect(job.status).toBe('succeeded');
    expect(await db.prisma.costLedger.count({ where: { outcome: 'succeeded' } })).toBe(1);
  });

  test('a bot killed before it could deliver delivers exactly once after restart', async ({ db, redisPrefix }) => {
    sys = await System.start({ db, redisPrefix, bot: 'none', a1111: { stepDelayMs: 100 } });
    const bot1 = await sys.spawn('bot');
    const i = await sys.imagine({ prompt: 'delivered after restart', steps: 10 });
    await sys.discord.waitFor(() => sys!.a1111.requests.some((r) => r.path === '/sdapi/v1/txt2img'), 10_000);
    bot1.child.kill('SIGKILL');
    await bot1.exited;
    // The job completes while no bot is listening: its completion event is missed.
    await sys.discord.waitFor(() => sys!.a1111.generations === 1 || undefined, 15_000);
    await new Promise((r) => setTimeout(r, 500));
    expect(i.original()?.attachments.length ?? 0).toBe(0);
    await sys.spawn('bot');
    const msg = await sys.finalReply(i, 20_000);
    expect(msg.attachments.some((a) => a.filename === 'image-1.png')).toBe(true);
    for (let n = 0; n < 100 && (await db.prisma.job.findFirstOrThrow()).deliveredAt === null; n++)
      await new Promise((r) => setTimeout(r, 50));
    // A second restart finds nothing left to deliver.
    const bot2 = sys.procs.at(-1)!;
    bot2.child.kill('SIGKILL');
    await bot2.exited;
    await sys.spawn('bot');
    await new Promise((r) => setTimeout(r, 1500));
    const resultPosts = sys.discord.requests.filter((r) => r.files.some((f) => f.filename.startsWith('image-')));
    expect(resultPosts).toHaveLength(1);
    expect(await chargedImages(db)).toBe(1);
    const job = await db.prisma.job.findFirstOrThrow();
    expect(job.deliveredAt).not.toBeNull();
  });
});

describe('Postgres restarts', () => {
  test("Postgres dropping the bot's connections (restart, failover) does not end the bot: the next command works", async ({
    db,
    redisPrefix,
  }) => {
    sys = await System.start({ db, redisPrefix });
    await sys.finalReply(await sys.imagine({ prompt: 'before', steps: 2 }));
    // What a Postgres restart does to idle connections: the server ends them.
    await db.prisma.$queryRawUnsafe(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`,
    );
    await new Promise((r) => setTimeout(r, 300));
    const after = await sys.finalReply(await sys.imagine({ prompt: 'after', steps: 2 }));
    expect(after.attachments.map((a) => a.filename)).toEqual(['image-1.png']);
    expect(await db.prisma.job.count({ where: { status: 'succeeded' } })).toBe(2);
  });
});

describe('configuration at start', () => {
  test.each([
    ['bot', { DISCORD_TOKEN: 'x', DISCORD_APP_ID: 'not-an-id' }, 'DISCORD_APP_ID'],
    ['bot', { DISCORD_APP_ID: '1111111111111111111', DISCORD_TOKEN: '' }, 'DISCORD_TOKEN'],
    ['worker', { A1111_URL: 'gpu-box:7860' }, 'A1111_URL'],
    ['worker', { A1111_URL: 'http://gpu:7860', BACKENDS: 'a1111,midjourney' }, 'BACKENDS'],
  ] as const)('%s with a malformed environment stops with one line naming the variable', async (which, env, name) => {
    const clean = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !/^(DISCORD_|A1111_|BACKENDS|COMFYUI_|REPLICATE_|HF_)/.test(k)),
    );
    const child = spawn(process.execPath, sourceEntryArgs(`${which}/main.ts`), {
      cwd: emptyCwd(),
      env: { ...clean, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const [code] = await once(child, 'exit');
    expect(code).toBe(1);
    const lines = stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^invalid configuration: ${name} `));
  });
});
