import { createServer, type Server, Socket } from 'node:net';

/**
 * A TCP proxy in front of a real server (Postgres here) that can be made slow: every chunk the
 * server sends back waits `delayMs` first. Loopback only; closed by the test that starts it.
 */
export interface SlowProxy {
  /** The port the proxy listens on, on 127.0.0.1. */
  port: number;
  delayMs: number;
  close(): Promise<void>;
}

export async function startSlowProxy(target: { host: string; port: number }): Promise<SlowProxy> {
  const sockets = new Set<Socket>();
  const proxy: SlowProxy = { port: 0, delayMs: 0, close: async () => undefined };
  const server: Server = createServer((client) => {
    const upstream = new Socket();
    sockets.add(client);
    sockets.add(upstream);
    upstream.connect(target.port, target.host);
    client.on('data', (d) => upstream.write(d));
    upstream.on('data', (d) => {
      const ms = proxy.delayMs;
      if (ms === 0) client.write(d);
      else setTimeout(() => client.writable && client.write(d), ms);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', end);
    upstream.on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.port = (server.address() as { port: number }).port;
  proxy.close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return proxy;
}
