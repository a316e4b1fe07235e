import type { REST } from 'discord.js';
import type { Redis } from 'ioredis';
import type { BotConfig } from '../core/config.js';
import type { Logger } from '../core/io/logger.js';
import type { Metrics } from '../core/io/metrics.js';
import type { GenerateQueue } from '../core/io/queue.js';
import type { ResultStore } from '../core/io/results.js';
import type { JobStore } from '../core/ports.js';
import type { Outbound } from './jobs/outbound.js';
import type { Notices } from './notices.js';
import type { SettingsStore } from './store/settings.js';
import type { StatsStore } from './store/stats.js';

/** Everything a command handler may use, built once in bot/main.ts and passed down. */
export interface BotDeps {
  config: BotConfig;
  store: JobStore;
  settings: SettingsStore;
  stats: StatsStore;
  notices: Notices;
  queue: GenerateQueue;
  /** The producer connection (fails fast), for small reads such as backend status. */
  redis: Redis;
  results: ResultStore;
  outbound: Outbound;
  rest: REST;
  log: Logger;
  now: () => Date;
  metrics?: Metrics;
}

/** Per-interaction context: the dependencies plus a logger bound to the interaction. */
export interface CommandContext {
  deps: BotDeps;
  log: Logger;
}
