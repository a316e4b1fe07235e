import { createServer, type Server } from 'node:net';
import { describe, expect, test } from 'vitest';
import { ConfigError } from '../../core/config.js';
import { startOpsServer } from '../../core/io/http-server.js';
import { createLogger } from '../../core/io/logger.js';

const log = createLogger({ level: 'silent' });

describe('the ops server (HTTP_PORT)', () => {
  test('a port another process holds stops start-up with a line naming HTTP_PORT, not an uncaught error', async () => {
    const squatter: Server = createServer();
    await new Promise<void>((r) => squatter.listen(0, '0.0.0.0', r));
    const port = (squatter.address() as { port: number }).port;
    try {
      const started = startOpsServer({ port, log, checks: {} });
      await expect(started).rejects.toBeInstanceOf(ConfigError);
      await expect(started).rejects.toThrow(`HTTP_PORT=${port}`);
    } finally {
      await new Promise<void>((r) => squatter.close(() => r()));
    }
  });

  test('a free port serves /healthz', async () => {
    const server = await startOpsServer({ port: 0, log, checks: {} });
    try {
      const port = (server.address() as { port: number }).port;
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    } finally {
      server.close();
    }
  });
});
