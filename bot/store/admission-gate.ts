import pg from 'pg';
import { ADMISSION_WAIT_MS, onArrival, onWaitedOut } from '../../core/admission-load.js';

/** Thrown to an admission that waited out its turn while Postgres answered nothing: the database is unreachable. */
class DatabaseNotAnswering extends Error {
  override readonly name = 'DatabaseNotAnswering';
}

interface Waiter {
  /** Answers counted when it arrived: any later one means Postgres answered while it waited. */
  answersAtArrival: number;
  start: () => void;
  timer: NodeJS.Timeout;
}

/**
 * The admissions' line for the database (core/admission-load.ts says when it sheds): at most
 * `slots` admission statements run at once, so they never take the whole pool; the rest wait here,
 * in order, for at most ADMISSION_WAIT_MS, instead of in the pool's own line, where they would stand
 * ahead of everything else the bot asks and end in the pool's connection timeout. Not cockatiel's
 * bulkhead (4.0): a queued call whose signal aborts there is rejected only once it reaches the head
 * of the line, so a member could wait far past the bound before hearing why.
 */
export class AdmissionGate {
  private running = 0;
  private readonly line: Waiter[] = [];
  /** Statements Postgres answered (a row or an SQL error), ever. */
  private answers = 0;
  /** Whether the last statement to end was answered; false until one is. */
  private answering = false;

  constructor(
    private readonly slots: number,
    private readonly maxWaiting: number,
    private readonly waitMs = ADMISSION_WAIT_MS,
  ) {}

  /**
   * Runs `statement` in a slot, or returns 'busy' without running it. Rejects when the wait ran out
   * with Postgres answering nothing, as a pool timeout would have.
   */
  async run<T>(statement: () => Promise<T>): Promise<T | 'busy'> {
    const verdict = onArrival({
      running: this.running,
      slots: this.slots,
      waiting: this.line.length,
      maxWaiting: this.maxWaiting,
      answering: this.answering,
    });
    if (verdict === 'busy') return 'busy';
    if (verdict === 'run') this.running++;
    // A waiter whose turn comes is handed the slot of the statement that ended.
    else if ((await this.turn()) === 'busy') return 'busy';
    try {
      const result = await statement();
      this.ended(true);
      return result;
    } catch (err) {
      // An SQL error (a lock timeout, say) is still an answer; a connection failure is not.
      this.ended(err instanceof pg.DatabaseError);
      throw err;
    }
  }

  /** Waits for a free slot; 'busy' when the wait ran out while others were being answered. */
  private turn(): Promise<'go' | 'busy'> {
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        answersAtArrival: this.answers,
        start: () => resolve('go'),
        timer: setTimeout(() => {
          this.line.splice(this.line.indexOf(waiter), 1);
          if (onWaitedOut(this.answers > waiter.answersAtArrival) === 'busy') resolve('busy');
          else reject(new DatabaseNotAnswering(`no admission statement was answered in ${this.waitMs} ms`));
        }, this.waitMs),
      };
      this.line.push(waiter);
    });
  }

  /** Hands the slot to the first in line, if any. */
  private ended(answered: boolean): void {
    if (answered) this.answers++;
    this.answering = answered;
    const next = this.line.shift();
    if (!next) {
      this.running--;
      return;
    }
    clearTimeout(next.timer);
    next.start();
  }
}
