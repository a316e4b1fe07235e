import { afterEach, expect } from 'vitest';
import { test } from '../setup/fixtures.js';
import { listenablePort } from '../setup/ports.js';
import { System } from './harness.js';

let sys: System | undefined;
afterEach(async () => {
  await sys?.stop();
  sys = undefined;
});

test('the bot answers /healthz, /readyz (Redis, Postgres, gateway) and /metrics with queue and acknowledgement figures', async ({
  db,
  redisPrefix,
}) => {
  const port = await listenablePort();
  sys = await System.start({ db, redisPrefix, env: { HTTP_PORT: String(port) }, worker: 'none' });
  const base = `http://127.0.0.1:${port}`;
  expect((await fetch(`${base}/healthz`)).status).toBe(200);
  const ready = await fetch(`${base}/readyz`);
  expect(ready.status).toBe(200);
  expect(await ready.json()).toEqual({ ok: true, checks: { redis: true, postgres: true, gateway: true } });
  const i = await sys.imagine({ prompt: 'metrics', steps: 2 });
  await sys.discord.waitFor(() => i.original()?.content.includes('Queued'));
  const body = await (await fetch(`${base}/metrics`)).text();
  expect(body).toMatch(/imagebot_queue_jobs\{[^}]*state="prioritized"[^}]*\} 1/);
  expect(body).toMatch(/imagebot_interaction_ack_seconds_count\{[^}]*\} 1/);
});

test('/readyz reports the gateway down once Discord has closed it for good (a reset token: 4004), so the container turns unhealthy', async ({
  db,
  redisPrefix,
}) => {
  const port = await listenablePort();
  sys = await System.start({ db, redisPrefix, env: { HTTP_PORT: String(port) }, worker: 'none' });
  const base = `http://127.0.0.1:${port}`;
  expect((await fetch(`${base}/readyz`)).status).toBe(200);
  sys.discord.disconnectAll(4004);
  await sys.discord.waitFor(() => sys!.discord.gatewayConnections() === 0);
  const ready = await sys.discord.waitForAsync(async () => {
    const r = await fetch(`${base}/readyz`);
    return r.status === 503 ? r : undefined;
  }, 5000);
  expect(((await ready.json()) as { checks: { gateway: boolean } }).checks.gateway).toBe(false);
});
