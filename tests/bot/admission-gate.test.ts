import pg from 'pg';
import { expect, test } from 'vitest';
import { AdmissionGate } from '../../bot/store/admission-gate.js';

/** A statement the test ends by hand. */
function held<T>() {
  let end!: (v: T) => void;
  let fail!: (e: Error) => void;
  const done = new Promise<T>((resolve, reject) => {
    end = resolve;
    fail = reject;
  });
  return { statement: () => done, end, fail };
}

test('statements beyond the slots wait in order and each takes the slot of one that ended', async () => {
  const gate = new AdmissionGate(1, 10, 60_000);
  const first = held<string>();
  const order: string[] = [];
  const a = gate.run(first.statement);
  const b = gate.run(async () => (order.push('b'), 'b'));
  const c = gate.run(async () => (order.push('c'), 'c'));
  expect(order).toEqual([]);
  first.end('a');
  expect(await Promise.all([a, b, c])).toEqual(['a', 'b', 'c']);
  expect(order).toEqual(['b', 'c']);
  // Free again: the next one runs at once.
  expect(await gate.run(async () => 'd')).toBe('d');
});

test('a full line sheds a newcomer without running it, once Postgres has answered', async () => {
  const gate = new AdmissionGate(1, 1, 60_000);
  let ran = 0;
  const stuck = held<number>();
  // Nothing answered yet: a long line may be a database in trouble, so nobody is shed.
  const a = gate.run(stuck.statement);
  const b = gate.run(async () => ++ran);
  const c = gate.run(async () => ++ran);
  stuck.end(0);
  expect(await Promise.all([a, b, c])).toEqual([0, 1, 2]);

  const again = held<number>();
  const d = gate.run(again.statement);
  const e = gate.run(async () => ++ran);
  expect(await gate.run(async () => ++ran)).toBe('busy');
  again.end(0);
  expect(await Promise.all([d, e])).toEqual([0, 3]);
  expect(ran).toBe(3);
});

test('an admission that waits out its turn: busy while others are answered, the database error when nothing is', async () => {
  const gate = new AdmissionGate(1, 10, 50);
  const running = held<string>();
  const ahead = held<string>();
  const r = gate.run(running.statement);
  const x = gate.run(ahead.statement);
  const waiter = gate.run(async () => 'never');
  // Postgres answers (an SQL error is an answer too) while the waiter waits; the one ahead of it takes the slot and hangs.
  running.fail(Object.assign(new pg.DatabaseError('lock timeout', 0, 'error'), { code: '55P03' }));
  await expect(r).rejects.toThrow('lock timeout');
  expect(await waiter).toBe('busy');

  // Now nothing is answered while the next one waits: the database is unreachable.
  const behindHung = gate.run(async () => 'never');
  await expect(behindHung).rejects.toThrow(/no admission statement was answered/);
  ahead.fail(new Error('Connection terminated unexpectedly'));
  await expect(x).rejects.toThrow('Connection terminated');
});
