import type { Logger } from '../core/io/logger.js';
import type { PrivacyStore } from '../core/ports.js';

/** Interaction tokens are valid for 15 minutes; past that they are useless to us and erased. */
const TOKEN_LIFE_MS = 15 * 60_000;
/** Jobs erased per statement, and statements per pass: a first pass on an old table catches up over a few hours. */
const BATCH = 1000;
const BATCHES_PER_PASS = 20;

export interface RetentionOptions {
  store: Pick<PrivacyStore, 'eraseOlderThan' | 'eraseDeadTokens'>;
  log: Logger;
  now: () => number;
  retentionDays: number;
  /** How often dead tokens are erased (default 1 min) and old jobs (default 1 h). */
  tokenEveryMs?: number;
  retentionEveryMs?: number;
}

/**
 * What the bot forgets by itself: interaction tokens once they are dead (delivery already erases
 * them as soon as a job is posted; this catches the rest), and every job's prompt, parameters and
 * message references once it is older than RETENTION_DAYS. Both at start, then on a timer; each
 * pass is a few indexed statements, safe to run in every bot process at once.
 */
export function startRetention(o: RetentionOptions): { stop(): Promise<void> } {
  let running: Promise<void> | undefined;
  let stopped = false;
  const once = (what: string, work: () => Promise<number>) => {
    if (running || stopped) return;
    running = work()
      .then((n) => {
        if (n > 0) o.log.info({ jobs: n }, what);
      })
      .catch((err: unknown) => o.log.warn({ err }, `${what}: failed`))
      .finally(() => {
        running = undefined;
      });
  };
  const tokens = () => once('dead interaction tokens erased', () => o.store.eraseDeadTokens(new Date(o.now() - TOKEN_LIFE_MS)));
  const old = () =>
    once('old jobs erased (retention)', async () => {
      const cutoff = new Date(o.now() - o.retentionDays * 86_400_000);
      let total = 0;
      for (let i = 0; i < BATCHES_PER_PASS && !stopped; i++) {
        const n = await o.store.eraseOlderThan(cutoff, BATCH);
        total += n;
        if (n < BATCH) break;
      }
      return total + (await o.store.eraseDeadTokens(new Date(o.now() - TOKEN_LIFE_MS)));
    });
  old();
  const t1 = setInterval(tokens, o.tokenEveryMs ?? 60_000);
  const t2 = setInterval(old, o.retentionEveryMs ?? 3_600_000);
  t1.unref();
  t2.unref();
  return {
    async stop() {
      stopped = true;
      clearInterval(t1);
      clearInterval(t2);
      await running;
    },
  };
}
