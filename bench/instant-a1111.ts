import { createServer, type Server } from 'node:http';
import sharp from 'sharp';

/**
 * An AUTOMATIC1111 stand-in that answers txt2img at once with a cached PNG of the requested size,
 * so a benchmark measures the system around the GPU box, not image encoding. `boxUrl(n)` is box n
 * on the same server (a path prefix, so each has its own identity and its own one-at-a-time lock).
 */
export async function startInstantA1111(opts: { delayMs?: number } = {}): Promise<{
  url: string;
  boxUrl(n: number): string;
  calls: number;
  /** [start, end] of every generation, in performance.now() ms; each box runs one at a time. */
  spans: [number, number][];
  close(): Promise<void>;
}> {
  const spans: [number, number][] = [];
  // One generation at a time per box, like a real GPU.
  const locks = new Map<string, Promise<void>>();
  const cache = new Map<string, string>();
  const png = async (w: number, h: number) => {
    const key = `${w}x${h}`;
    let b64 = cache.get(key);
    if (!b64) {
      const buf = await sharp({ create: { width: w, height: h, channels: 3, background: { r: 40, g: 90, b: 160 } } })
        .png()
        .toBuffer();
      b64 = buf.toString('base64');
      cache.set(key, b64);
    }
    return b64;
  };
  const idle = JSON.stringify({
    progress: 0,
    eta_relative: 0,
    state: {
      skipped: false,
      interrupted: false,
      job: '',
      job_count: 0,
      job_timestamp: '0',
      job_no: 0,
      sampling_step: 0,
      sampling_steps: 0,
    },
    current_image: null,
    textinfo: null,
  });
  const state = { calls: 0 };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        const full = (req.url ?? '').split('?')[0] ?? '';
        const box = /^\/box\d+/.exec(full)?.[0] ?? '';
        const path = full.slice(box.length);
        if (path === '/sdapi/v1/txt2img') {
          state.calls++;
          const body = JSON.parse(Buffer.concat(chunks).toString()) as { width: number; height: number; batch_size: number; seed: number };
          let release!: () => void;
          const prev = locks.get(box) ?? Promise.resolve();
          locks.set(box, new Promise((r) => (release = r)));
          await prev;
          const t0 = performance.now();
          const image = await png(body.width, body.height);
          if (opts.delayMs) await new Promise((r) => setTimeout(r, opts.delayMs));
          spans.push([t0, performance.now()]);
          release();
          const images = Array.from({ length: body.batch_size ?? 1 }, () => image);
          const info = JSON.stringify({
            seed: body.seed,
            all_seeds: images.map((_, i) => body.seed + i),
            width: body.width,
            height: body.height,
          });
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ images, info }));
        } else if (path === '/sdapi/v1/progress') {
          res.writeHead(200, { 'content-type': 'application/json' }).end(idle);
        } else if (path === '/sdapi/v1/sd-models') {
          res.writeHead(200, { 'content-type': 'application/json' }).end('[]');
        } else if (path === '/sdapi/v1/interrupt') {
          res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
        } else {
          res.writeHead(404).end();
        }
      })();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    boxUrl: (n: number) => `http://127.0.0.1:${port}/box${n}`,
    get calls() {
      return state.calls;
    },
    spans,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
