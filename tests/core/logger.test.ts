import { Writable } from 'node:stream';
import { expect, test } from 'vitest';
import { createLogger } from '../../core/io/logger.js';

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
