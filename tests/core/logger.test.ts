import { Writable } from 'node:stream';
import { expect, test } from 'vitest';
import { createLogger, scrubUrlCredentials } from '../../core/io/logger.js';

function capture() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  return { lines, log: createLogger({ destination, level: 'info' }) };
}

test('tokens, authorization headers and URL credentials never reach the log', () => {
  const { lines, log } = capture();
  log.info({ DISCORD_TOKEN: 'tok-123', config: { REPLICATE_API_TOKEN: 'r8_secret' }, headers: { authorization: 'Bearer abc' } }, 'boot');
  log.info({ url: 'redis://user:hunter2@redis:6379' }, 'connecting to http://admin:pw99@gpu:7860');
  log.error({ err: new Error('connect failed to postgresql://postgres:dbpass@db/x') }, 'oops');
  const out = lines.join('');
  for (const secret of ['tok-123', 'r8_secret', 'Bearer abc', 'hunter2', 'pw99', 'dbpass']) expect(out).not.toContain(secret);
  expect(out).toContain('[redacted]');
  expect(out).toContain('redis://***@redis:6379');
  expect(JSON.parse(lines[0]!)).toMatchObject({ msg: 'boot' });
});

test('a password without a user name (redis://:pass@host, the usual Redis form) is masked too, in logs and in doctor and status output', () => {
  const { lines, log } = capture();
  log.warn({ url: 'redis://:s3cretpass@redis:6379/0' }, 'Redis not reachable at rediss://:other-secret@cache:6380');
  const out = lines.join('');
  for (const secret of ['s3cretpass', 'other-secret']) expect(out).not.toContain(secret);
  expect(scrubUrlCredentials('✗ Redis not reachable at redis://:s3cretpass@redis:6379')).toBe(
    '✗ Redis not reachable at redis://***@redis:6379',
  );
  // Nothing that is not a credential is touched.
  expect(scrubUrlCredentials('see https://example.com/a@b and mailto:x@y')).toBe('see https://example.com/a@b and mailto:x@y');
});

test('an error from Discord is logged by an allow-list: type, message, code, status, method and route with its token masked; never its body, files or URL', async () => {
  const { DiscordAPIError } = await import('discord.js');
  const { lines, log } = capture();
  const png = Buffer.alloc(64, 7);
  const err = new DiscordAPIError(
    { code: 50013, message: 'Missing Permissions' },
    50013,
    403,
    'PATCH',
    'https://discord.com/api/v10/webhooks/1111111111111111111/aW50ZXJhY3Rpb246c2VjcmV0LXRva2Vu/messages/@original?wait=true',
    { files: [{ name: 'image-1.png', data: png }], body: { content: 'a prompt' } },
  );
  log.error({ err, jobId: 'j1' }, 'delivery failed');
  const line = JSON.parse(lines[0]!);
  expect(line.err).toMatchObject({
    type: 'DiscordAPIError[50013]',
    message: 'Missing Permissions',
    code: 50013,
    status: 403,
    method: 'PATCH',
    route: '/webhooks/1111111111111111111/:token/messages/@original',
  });
  expect(Object.keys(line.err).sort()).toEqual(['code', 'message', 'method', 'route', 'stack', 'status', 'type']);
  expect(lines[0]).not.toContain('aW50ZXJhY3Rpb246c2VjcmV0LXRva2Vu');
  expect(lines[0]).not.toContain('image-1.png');
  expect(lines[0]).not.toContain('"data"');
});

test('the process’s own secrets are stripped wherever they appear, and a Redis error’s command (its image bytes) is never logged', () => {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  const log = createLogger({ destination, secrets: ['plain-bot-secret-123'] });
  const redisErr = Object.assign(new Error('OOM command not allowed'), { command: { name: 'set', args: ['k', Buffer.alloc(32, 1)] } });
  log.warn({ err: new Error('login failed with plain-bot-secret-123'), detail: 'Bot plain-bot-secret-123' }, 'boot');
  log.warn({ err: new Error('wrapped', { cause: redisErr }) }, 'redis');
  const out = lines.join('');
  expect(out).not.toContain('plain-bot-secret-123');
  expect(out).not.toContain('"args"');
  expect(JSON.parse(lines[1]!).err.cause).toMatchObject({ type: 'Error', message: 'OOM command not allowed' });
});

test('a GPU link’s join token is stripped by its shape wherever it appears, and WORKER_JOIN_TOKEN by name', () => {
  const { lines, log } = capture();
  const token = 'ibj1.0123456789abcdef.Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4';
  log.info({ WORKER_JOIN_TOKEN: token }, 'boot');
  log.warn({ detail: `pasted WORKER_JOIN_TOKEN=${token} in the wrong place` }, `token ${token}`);
  log.error({ err: new Error(`join failed for ${token}`) }, 'join');
  const out = lines.join('');
  expect(out).not.toContain('Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4');
  expect(out).toContain('[token]');
});
