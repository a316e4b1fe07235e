import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import type { WorkerConfig } from '../core/config.js';
import { publishBackendStatus, type BackendStatus } from '../core/io/backend-status.js';
import type { Logger } from '../core/io/logger.js';
import { describePrice, type PriceModel } from '../core/pricing.js';
import type { BackendChain } from './backends/chain.js';

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

/** Probes every backend's health now and then and publishes it with its circuit state for `/admin backends`. */
export function startStatusReports(o: {
  chain: BackendChain;
  redis: Redis;
  prefix: string;
  prices: PriceModel;
  log: Logger;
  everyMs: number;
}): { stop(): void; once(): Promise<void> } {
  const worker = `${hostname()}:${process.pid}`;
  const once = async () => {
    const statuses: BackendStatus[] = await Promise.all(
      o.chain.backends.map(async (b) => {
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
        };
      }),
    );
    await publishBackendStatus(o.redis, o.prefix, statuses);
  };
  const run = () => void once().catch((err: unknown) => o.log.debug({ err }, 'status report failed'));
  run();
  const timer = setInterval(run, o.everyMs);
  timer.unref();
  return { stop: () => clearInterval(timer), once };
}
