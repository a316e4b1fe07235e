import { budgetMonth } from '../core/budget.js';
import type { JobPayload } from '../core/generation.js';
import type { BudgetReservations } from '../core/io/budget-reservations.js';
import type { Logger } from '../core/io/logger.js';

/** Money set aside for one paid attempt; settled to what the provider billed once the attempt is over. */
export interface Reservation {
  /** Dollars set aside: the most this attempt may bill. */
  readonly usd: number;
  /** Moves the reservation to the month's spend at the billed amount (0 when nothing was billed). */
  settle(billedUsd: number): Promise<void>;
  /** Where it lives in the month's shared budget: a later try settles it if this worker dies mid-run. */
  readonly key?: { guildId: string; month: string; field: string };
}

/**
 * The guild's budget for paid providers, as one job sees it. Every decision to spend goes through
 * here: whether a busy box's job may overflow to the cloud, and whether a paid attempt (overflow or
 * failover) may start.
 */
export interface PaidBudget {
  /** Whether the budget would let a paid provider serve this job now; nothing is set aside. */
  allows(estimateUsd: number): boolean;
  /**
   * Just before a paid attempt: sets aside up to `wantUsd` (at least `leastUsd`), or says no (null):
   * the month's paid spend leaves no room for it.
   */
  reserve(backend: string, o: { wantUsd: number; leastUsd: number }, signal: AbortSignal): Promise<Reservation | null>;
}

const settled: Reservation['settle'] = async () => undefined;

/** The budget as the job's payload carries it, without shared reservations: `paidAllowed` from admission (tests, one process). */
export function paidBudgetOf(payload: Pick<JobPayload, 'paidAllowed'>): PaidBudget {
  return {
    allows: () => payload.paidAllowed,
    reserve: async (_b, o) => (payload.paidAllowed ? { usd: o.wantUsd, settle: settled } : null),
  };
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });

export interface ReservingBudgetOptions {
  reservations: Pick<BudgetReservations, 'reserve' | 'settle'>;
  payload: Pick<JobPayload, 'jobId' | 'guildId' | 'paidAllowed' | 'budget'>;
  /**
   * Which run of the job this is (BullMQ's attemptsStarted): every run's reservations are its own.
   * A run that died holding one leaves it set aside (too much, never too little) until the next try
   * settles it at what the run's prediction billed (worker/processor.ts); it is never taken over.
   */
  run: number;
  log: Logger;
  now?: () => Date;
  /** How long an attempt waits for other attempts' reservations to settle before the job gives up on paid providers. */
  holdMs?: number;
}

/**
 * The budget reserved against the guild's month in Redis, shared by every worker: one EVALSHA per
 * paid attempt to reserve and one to settle. While other attempts' reservations fill the room
 * that settled spend leaves, the attempt waits for them (they may bill less than they set aside).
 */
export function reservingBudget(o: ReservingBudgetOptions): PaidBudget {
  const { payload } = o;
  const now = o.now ?? (() => new Date());
  let n = 0;
  /** The month's spend left no room once: a box's job stops offering to overflow to the cloud. */
  let spent = false;
  return {
    allows: () => payload.paidAllowed && !spent,
    async reserve(backend, want, signal) {
      const budget = payload.budget;
      if (!payload.paidAllowed || !budget || !payload.guildId) return null;
      const guildId = payload.guildId;
      const field = `${payload.jobId}:${o.run}:${n++}`;
      const deadline = Date.now() + (o.holdMs ?? 120_000);
      for (let wait = 100; ; wait = Math.min(wait * 2, 1000)) {
        const month = budgetMonth(now());
        // A month that began after admission starts from nothing spent.
        const seed = { limitUsd: budget.limitUsd, settledUsd: month === budget.month ? budget.spentUsd : 0 };
        const answer = await o.reservations.reserve(guildId, month, field, { ...want, seed });
        if (answer.kind === 'reserved') {
          o.log.debug({ backend, field, usd: answer.usd }, 'budget reserved');
          return {
            usd: answer.usd,
            key: { guildId, month, field },
            settle: async (billedUsd) => {
              try {
                await o.reservations.settle(guildId, month, field, billedUsd);
              } catch (err) {
                // The reservation stays set aside (too much, never too little) until the month's hash expires.
                o.log.warn({ err, field }, 'could not settle a budget reservation');
              }
            },
          };
        }
        if (answer.kind === 'spent') spent = true;
        if (spent || signal.aborted || Date.now() >= deadline) return null;
        await sleep(wait, signal);
      }
    },
  };
}
