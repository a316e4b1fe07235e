import { createServer, type Server } from 'node:http';
import { ConfigError } from '../config.js';
import type { Logger } from './logger.js';

export type ReadinessCheck = () => Promise<boolean>;

export interface OpsServerOptions {
  port: number;
  host?: string;
  log: Logger;
  /** Named checks for /readyz; all must pass. */
  checks: Record<string, ReadinessCheck>;
  /** Prometheus exposition for /metrics, when metrics are enabled. */
  metrics?: () => Promise<{ contentType: string; body: string }>;
}

async function withTimeout(check: ReadinessCheck, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([check().catch(() => false), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** /healthz (the process is alive), /readyz (its dependencies answer) and /metrics on one small server. */
export async function startOpsServer(o: OpsServerOptions): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
      return;
    }
    if (path === '/readyz') {
      void (async () => {
        const names = Object.keys(o.checks);
        const results = await Promise.all(names.map((n) => withTimeout(o.checks[n]!, 2000)));
        const detail = Object.fromEntries(names.map((n, i) => [n, results[i]]));
        const ok = results.every(Boolean);
        res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ ok, checks: detail }));
      })();
      return;
    }
    if (path === '/metrics' && o.metrics) {
      o.metrics().then(
        (m) => res.writeHead(200, { 'content-type': m.contentType }).end(m.body),
        (err: unknown) => {
          o.log.warn({ err }, 'metrics failed');
          res.writeHead(500).end();
        },
      );
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve, reject) => {
    // Without this, a port already taken is an uncaught 'error' and start-up hangs on a promise that never settles.
    const failed = (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE' || err.code === 'EACCES')
        reject(
          new ConfigError([
            `HTTP_PORT=${o.port}: ${err.code === 'EADDRINUSE' ? 'another process already listens on this port' : 'this process may not listen on this port'}; choose another HTTP_PORT, or 0 to turn the health and metrics server off`,
          ]),
        );
      else reject(err);
    };
    server.once('error', failed);
    server.listen(o.port, o.host ?? '0.0.0.0', () => {
      // Only start-up's errors are start-up's to report.
      server.off('error', failed);
      resolve();
    });
  });
  o.log.info({ port: (server.address() as { port: number } | null)?.port ?? o.port }, 'ops server listening');
  return server;
}
