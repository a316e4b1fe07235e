/**
 * When the bot sheds admissions. The bot's own event loop, not Postgres, is what a large burst
 * saturates: statements take a millisecond on the server, but their answers wait for the loop. So
 * admissions wait in the bot, in a line of their own, for one of a fixed number of database slots;
 * a member whose turn would not come soon is told the bot is busy, before any statement is spent
 * and with their quota untouched, instead of waiting until the pool times out and hearing that the
 * database is unreachable.
 */

/**
 * Longest an admission waits for a slot. The member's interaction is acknowledged whatever happens
 * here (bot/router.ts defers within 1.2 s); this is how long "thinking…" may last before they hear
 * why nothing was queued. The pool's 2 s connection timeout, which bounded it before, is meant for
 * a database in trouble: a bot that also settles and posts finished jobs during a burst admits
 * all of a 1500-interaction burst within 5 s (bench/overhead), and with 2 s refused some 950.
 */
export const ADMISSION_WAIT_MS = 5000;

/** The admission line as one admission finds it. */
export interface AdmissionLine {
  /** Admission statements holding a slot. */
  running: number;
  slots: number;
  /** Admissions already waiting for a slot. */
  waiting: number;
  /** Most admissions that may wait at once: beyond it, a newcomer's turn would not come within ADMISSION_WAIT_MS. */
  maxWaiting: number;
  /**
   * The last admission statement to end got an answer from Postgres (a row or an SQL error), not a
   * connection failure. While it did not, a long line means a database in trouble, not a busy bot.
   */
  answering: boolean;
}

/** What an arriving admission does: take a slot, wait for one, or be refused as busy. */
export function onArrival(line: AdmissionLine): 'run' | 'wait' | 'busy' {
  if (line.running < line.slots && line.waiting === 0) return 'run';
  if (line.answering && line.waiting >= line.maxWaiting) return 'busy';
  return 'wait';
}

/**
 * An admission waited ADMISSION_WAIT_MS without a slot. If Postgres answered other admissions in
 * the meantime, the database is fine and the bot is behind: busy. If nothing was answered, the
 * database is unreachable, as the member has always been told.
 */
export function onWaitedOut(answeredMeanwhile: boolean): 'busy' | 'database_unavailable' {
  return answeredMeanwhile ? 'busy' : 'database_unavailable';
}
