import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { LiveMessage } from '../../../bot/jobs/live-message.js';
import { type BoardEntry, QueueBoard } from '../../../bot/jobs/queue-board.js';
import type { JobPlace, QueueSnapshot } from '../../../core/io/queue-position.js';
import { REF, REQUEST, recordingEdits, silent } from './doubles.js';

beforeEach(() => {
  vi.useFakeTimers({ now: new Date('2026-11-23T12:00:00Z') });
});
afterEach(() => {
  vi.useRealTimers();
});

/** A queue whose places the test sets; every read is recorded. */
function fakeQueue() {
  const q = {
    places: new Map<string, JobPlace>(),
    active: 0,
    statuses: [] as QueueSnapshot['statuses'],
    boxLine: 0,
    reads: [] as string[][],
    /** Reads still to fail (a Redis hiccup). */
    failing: 0,
    async read(ids: readonly string[]): Promise<QueueSnapshot> {
      q.reads.push([...ids]);
      if (q.failing > 0 && q.failing--) throw new Error('Redis timeout');
      const places = new Map(ids.map((id) => [id, q.places.get(id) ?? ({ state: 'other' } as const)]));
      return { places, active: q.active, waiting: q.places.size, statuses: q.statuses, boxLine: q.boxLine };
    },
  };
  return q;
}

function setup(ownsGuild: (g: string) => boolean = () => true) {
  const queue = fakeQueue();
  const edits = recordingEdits();
  const board = new QueueBoard({ positions: queue, log: silent, now: () => Date.now(), ownsGuild, queueRefreshMs: 1000 });
  const entry = (n: number, guildId = 'g1'): BoardEntry => ({
    jobId: `j${n}`,
    guildId,
    request: REQUEST,
    phase: 'new',
    placeEditAt: 0,
    live: new LiveMessage({
      jobId: `j${n}`,
      channelId: 'c1',
      ref: { ...REF, token: `tok${n}` },
      since: Date.now(),
      edits,
      log: silent,
      now: () => Date.now(),
      editIntervalMs: 1500,
      tokenLifetimeMs: 14 * 60_000,
    }),
  });
  return { queue, edits, board, entry };
}

const placeOf = (content: string) => /position (\d+)|you are next/.exec(content)?.[0];

describe('queue positions and ETAs', () => {
  test('a waiting job is first shown with its place; one an idle worker took already is shown as next', async () => {
    const { queue, board, entry, edits } = setup();
    const waiting = entry(1);
    const taken = entry(2);
    queue.places.set('j1', { state: 'waiting', ahead: 2 });
    board.showFirst(waiting);
    board.showFirst(taken);
    await vi.advanceTimersByTimeAsync(100);
    expect(edits.sent.map((e) => [e.token, placeOf(e.content)])).toEqual([
      ['tok1', 'position 3'],
      ['tok2', 'you are next'],
    ]);
    expect(waiting.phase).toBe('queued');
    expect(taken.phase).toBe('new');
  });

  test('a waiting job whose first position read fails says it is queued, not starting, and shows its place once a read succeeds', async () => {
    const { queue, board, entry, edits } = setup();
    const e = entry(1);
    queue.failing = 1;
    queue.places.set('j1', { state: 'waiting', ahead: 2 });
    board.showFirst(e);
    await vi.advanceTimersByTimeAsync(100);
    expect(edits.sent.map((s) => s.content.split('\n')[1])).toEqual(['Queued. Its place in the queue shows here in a moment.']);
    await vi.advanceTimersByTimeAsync(2000);
    expect(queue.reads).toEqual([['j1'], ['j1']]);
    expect(edits.sent.map((s) => placeOf(s.content))).toEqual([undefined, 'position 3']);
    // It stays on the board: its place keeps moving with the queue.
    queue.places.set('j1', { state: 'waiting', ahead: 1 });
    board.left('other');
    await vi.advanceTimersByTimeAsync(2000);
    expect(edits.sent.map((s) => placeOf(s.content))).toEqual([undefined, 'position 3', 'position 2']);
  });

  test('jobs queued together share one position read; a job that finished meanwhile is never shown a place', async () => {
    const { queue, board, entry, edits } = setup();
    const [a, b, done] = [entry(1), entry(2), entry(3)];
    for (const e of [a, b, done]) board.showFirst(e);
    done.live.close();
    await vi.advanceTimersByTimeAsync(100);
    expect(queue.reads).toEqual([['j1', 'j2']]);
    expect(edits.sent.map((e) => e.token)).toEqual(['tok1', 'tok2']);
  });

  test('no time estimate while no worker reports a slot, run times or not, nor while no job has finished; it says which', async () => {
    const { queue, board, entry, edits } = setup();
    const shown = async (n: number, ahead: number) => {
      queue.places.set(`j${n}`, { state: 'waiting', ahead });
      board.showFirst(entry(n));
      await vi.advanceTimersByTimeAsync(100);
      return edits.sent.at(-1)!.content.split('\n')[1];
    };
    const worker: QueueSnapshot['statuses'][number] = {
      backend: 'a1111',
      family: 'a1111',
      worker: 'w1',
      healthy: true,
      detail: '',
      latencyMs: 1,
      circuit: 'closed',
      inFlight: 0,
      paid: false,
      price: 'free',
      at: Date.now(),
      concurrency: 1,
    };
    const noWorker = 'No time estimate: no worker is available to run jobs right now.';
    expect(await shown(1, 0)).toBe(`Queued: you are next. ${noWorker}`);
    queue.statuses = [worker];
    expect(await shown(2, 0)).toBe('Queued: you are next. No time estimate yet: no job has finished recently.');
    board.seed([
      { ms: 8000, count: 1 },
      { ms: 9000, count: 1 },
    ]);
    expect(await shown(3, 0)).toMatch(/^Queued: you are next\. Ready in /);
    // Run times exist, but every worker is offline: that, not a lack of finished jobs, is why.
    queue.statuses = [];
    expect(await shown(4, 2)).toBe(`Queued: position 3. ${noWorker}`);
  });

  test('many starts and finishes within the refresh interval make one batched read of every queued place', async () => {
    const { queue, board, entry } = setup();
    const entries = [1, 2, 3].map((n) => entry(n));
    entries.forEach((e, k) => {
      queue.places.set(e.jobId, { state: 'waiting', ahead: k + 1 });
      board.wait(e);
    });
    for (let n = 0; n < 20; n++) board.started(`other-${n}`);
    await vi.advanceTimersByTimeAsync(0);
    expect(queue.reads).toEqual([['j1', 'j2', 'j3']]);
    for (let n = 0; n < 20; n++) board.left(`other-${n}`);
    await vi.advanceTimersByTimeAsync(999);
    expect(queue.reads).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(queue.reads).toHaveLength(2);
  });

  test('only replies whose place changed are edited', async () => {
    const { queue, board, entry, edits } = setup();
    const [a, b] = [entry(1), entry(2)];
    queue.places.set('j1', { state: 'waiting', ahead: 0 });
    queue.places.set('j2', { state: 'waiting', ahead: 1 });
    board.wait(a);
    board.wait(b);
    board.requestRefresh();
    await vi.advanceTimersByTimeAsync(1);
    expect(edits.sent.map((e) => placeOf(e.content))).toEqual(['you are next', 'position 2']);
    queue.places.set('j2', { state: 'waiting', ahead: 0 });
    queue.places.set('j1', { state: 'other' });
    board.left('j1');
    await vi.advanceTimersByTimeAsync(5000);
    expect(edits.sent.map((e) => placeOf(e.content))).toEqual(['you are next', 'position 2', 'you are next']);
  });

  test('a job seen running leaves the board; so does a reply of a guild another shard serves', async () => {
    const { queue, board, entry } = setup((g) => g === 'g1');
    const running = entry(1);
    const elsewhere = entry(2, 'g2');
    queue.places.set('j2', { state: 'waiting', ahead: 0 });
    board.wait(running);
    board.wait(elsewhere);
    board.requestRefresh();
    await vi.advanceTimersByTimeAsync(1);
    expect(running.phase).toBe('running');
    expect(queue.reads).toEqual([['j1']]);
    board.requestRefresh();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(queue.reads).toHaveLength(1);
  });

  test('far places (10 or more ahead) are edited at most once every 15 s each, five per refresh, stalest first', async () => {
    const { queue, board, entry, edits } = setup();
    const far = Array.from({ length: 8 }, (_, k) => entry(k + 1));
    const at = (s: number) => {
      for (const [k, e] of far.entries()) queue.places.set(e.jobId, { state: 'waiting', ahead: 40 + k - s });
    };
    at(0);
    for (const e of far) board.wait(e);
    board.requestRefresh();
    await vi.advanceTimersByTimeAsync(1);
    expect(edits.sent.map((e) => e.token)).toEqual(['tok1', 'tok2', 'tok3', 'tok4', 'tok5']);
    // The queue moves every second; the three left out are edited next, then nobody for 15 s.
    for (let s = 1; s <= 14; s++) {
      at(s);
      board.left(`gone-${s}`);
      await vi.advanceTimersByTimeAsync(1000);
    }
    expect(edits.sent.map((e) => e.token)).toEqual(['tok1', 'tok2', 'tok3', 'tok4', 'tok5', 'tok6', 'tok7', 'tok8']);
  });

  test('positions for /quota: waiting jobs get their place, others none', async () => {
    const { queue, board } = setup();
    queue.places.set('j1', { state: 'waiting', ahead: 4 });
    queue.places.set('j2', { state: 'delayed' });
    expect(await board.positionsOf(['j1', 'j2', 'j3'])).toEqual(new Map([['j1', 5]]));
    expect(await board.positionsOf([])).toEqual(new Map());
  });

  test("/quota's position is the one the job's reply shows: jobs waiting in line for the GPU box are ahead of it in both", async () => {
    const { queue, board, entry, edits } = setup();
    queue.statuses = [
      {
        backend: 'a1111',
        family: 'a1111',
        worker: 'w1',
        healthy: true,
        detail: '',
        latencyMs: 1,
        circuit: 'closed',
        inFlight: 1,
        paid: false,
        price: 'free',
        at: Date.now(),
        concurrency: 1,
        box: 'http://gpu-box:7860',
      },
    ];
    queue.active = 4;
    queue.boxLine = 3;
    queue.places.set('j1', { state: 'waiting', ahead: 0 });
    board.showFirst(entry(1));
    await vi.advanceTimersByTimeAsync(100);
    expect(placeOf(edits.sent[0]!.content)).toBe('position 4');
    expect(await board.positionsOf(['j1'])).toEqual(new Map([['j1', 4]]));
  });
});
