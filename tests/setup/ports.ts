import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** The kernel's range for outgoing connections' local ports (Linux); elsewhere, the IANA one. */
function ephemeralRange(): [number, number] {
  try {
    const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (lo && hi) return [lo, hi];
  } catch {}
  return [49152, 65535];
}

/**
 * A port for a process the test starts to listen on (HTTP_PORT), free now on every interface as
 * the process binds it. Picked below the ephemeral range: a port the kernel hands out for `listen(0)`
 * can be taken, between the check and the process's own listen, as the local port of any of the
 * suite's many outgoing connections (seen in CI: EADDRINUSE); ports below that range are never
 * handed out implicitly, so only another test picking the same number at the same moment could clash.
 */
export async function listenablePort(): Promise<number> {
  const [lo] = ephemeralRange();
  const floor = Math.min(20_000, lo - 1000);
  for (let tries = 0; tries < 50; tries++) {
    const port = floor + Math.floor(Math.random() * (lo - floor));
    const free = await new Promise<boolean>((resolve) => {
      const srv = createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '0.0.0.0', () => srv.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error('no free port below the ephemeral range');
}
