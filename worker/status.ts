import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import type { WorkerConfig } from '../core/config.js';
import { type BackendStatus, publishBackendStatus, removeBackendStatus } from '../core/io/backend-status.js';
import type { Logger } from '../core/io/logger.js';
import type { PresetCatalog } from '../core/presets.js';
import { describePrice, type PriceModel } from '../core/pricing.js';
import type { BackendChain } from './backends/chain.js';
import type { PriceEstimates } from './estimates.js';

export function priceModelOf(c: WorkerConfig): PriceModel {
  return {
    a1111UsdPerGpuHour: c.A1111_USD_PER_GPU_HOUR,
    comfyuiUsdPerGpuHour: c.COMFYUI_USD_PER_GPU_HOUR,
    replicateUsdPerSecond: c.REPLICATE_USD_PER_SECOND,
    replicateFluxUsdPerImage: c.REPLICATE_FLUX_USD_PER_IMAGE,
    hfUsdPerRequest: c.HF_USD_PER_REQUEST,
    hfUsdPerEndpointHour: c.HF_USD_PER_ENDPOINT_HOUR,
  };
}

let started = 0;

/**
 * Probes every backend's health now and then and publishes it with its circuit state for
 * `/admin backends`, and with this worker's concurrency so the bot can count live job slots for
 * its queue ETA. stop() withdraws the reports, so a stopped worker's slots stop counting at once.
 */
export function startStatusReports(o: {
  chain: BackendChain;
  redis: Redis;
  prefix: string;
  prices: PriceModel;
  log: Logger;
  everyMs: number;
  concurrency: number;
  presets: PresetCatalog;
  estimates: PriceEstimates;
  overflowAfterS: number;
  link?: string;
}): { stop(): Promise<void>; once(): Promise<void> } {
  // Unique per Worker, not only per process: tests and embedders may run several in one process.
  started++;
  const worker = `${hostname()}:${process.pid}${started > 1 ? `#${started}` : ''}`;
  let stopped = false;
  const once = async () => {
    const statuses: BackendStatus[] = await Promise.all(
      o.chain.backends.map(async (b, order) => {
        const h = await b.health(AbortSignal.timeout(3000)).catch((err: unknown) => ({ ok: false, detail: String(err), latencyMs: 0 }));
        return {
          backend: b.id,
          family: b.family,
          worker,
          healthy: h.ok,
          detail: h.detail.slice(0, 200),
          latencyMs: Math.round(h.latencyMs),
          circuit: o.chain.circuitState(b.id) ?? 'closed',
          inFlight: b.inFlight,
          paid: b.capabilities.paid,
          price: describePrice(o.prices, b.family),
          at: Date.now(),
          concurrency: o.concurrency,
          ...(b.box ? { box: b.box.id } : {}),
          order,
          presets: o.estimates.presetPrices(b, o.presets),
          overflowAfterS: o.overflowAfterS,
          ...(o.link ? { link: o.link } : {}),
        };
      }),
    );
    // Checked in the same tick as the write, so no report can land after stop()'s withdrawal.
    if (stopped) return;
    await publishBackendStatus(o.redis, o.prefix, statuses);
  };
  const run = () => void once().catch((err: unknown) => o.log.debug({ err }, 'status report failed'));
  run();
  const timer = setInterval(run, o.everyMs);
  timer.unref();
  return {
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      const withdrawal = removeBackendStatus(
        o.redis,
        o.prefix,
        worker,
        o.chain.backends.map((b) => b.id),
      ).catch((err: unknown) => o.log.debug({ err }, 'status withdrawal failed'));
      // Bounded: a worker whose Redis user was revoked (an unlinked box) waits forever for a
      // connection that cannot come back; its reports then expire with the hash.
      let bound: NodeJS.Timeout | undefined;
      await Promise.race([withdrawal, new Promise<void>((resolve) => (bound = setTimeout(resolve, 2000)))]);
      clearTimeout(bound);
    },
    once,
  };
}
