import type { FirstAnswer } from '../../commands/context.js';
import { boxSlots, type DurationSample, DurationWindow, estimateEta, liveSlots, STATUS_STALE_MS, samplesInUse } from '../../core/eta.js';
import type { GenerationRequest } from '../../core/generation.js';
import type { Logger } from '../../core/io/logger.js';
import type { QueueSnapshot } from '../../core/io/queue-position.js';
import { previewRoute } from '../../core/overflow.js';
import type { LiveMessage } from './live-message.js';
import { type MessageBody, queuedBody } from './render.js';

/*
 * Bounding Discord calls for position updates. Every start or finish moves every queued job up one
 * place, so a 1000-job queue would mean 1000 edits per event. Instead, the first FRONT_POSITIONS
 * jobs (the ones whose members are about to see something happen) are updated on every refresh,
 * still at most one edit per message per edit interval; farther jobs at most once every
 * FAR_EVERY_MS each, and at most FAR_EDITS_PER_REFRESH of them per refresh, stalest first. With
 * refreshes at most every queueRefreshMs (1 s), that caps position edits at about
 * 10 / 1.5 s + 5 / 1 s ≈ 12 per second whatever the queue's length.
 */
const FRONT_POSITIONS = 10;
const FAR_EVERY_MS = 15_000;
const FAR_EDITS_PER_REFRESH = 5;
/** Durations remembered for the ETA: recent enough to follow a change of backend, enough to average out. */
export const DURATION_WINDOW = 30;
/** Jobs whose start this process saw, kept for the ETA's remaining-time guess; bounded against missed events. */
const ACTIVE_SEEN_MAX = 1000;

/** A job on the board: new (admitted, not shown yet), queued (its reply shows its place) or running. */
export interface BoardEntry {
  readonly jobId: string;
  readonly guildId: string;
  readonly request: GenerationRequest;
  readonly live: LiveMessage;
  phase: 'new' | 'queued' | 'running';
  /** When a position edit was last due (far places are refreshed rarely). */
  placeEditAt: number;
  /** The guild's budget allowed paid providers at admission (unknown after a restart: assumed yes, so a price is shown rather than hidden). */
  paidAllowed?: boolean;
}

/** Reads the places of many jobs in one round trip (core/io/queue-position.ts). */
export interface PositionReader {
  read(jobIds: readonly string[]): Promise<QueueSnapshot>;
}

export interface QueueBoardOptions {
  positions: PositionReader;
  log: Logger;
  now: () => number;
  /** true when this process's gateway shard(s) serve the guild; others leave its replies alone. */
  ownsGuild: (guildId: string) => boolean;
  /** Least time between two reads of the queued jobs' positions (each is one Redis round trip). */
  queueRefreshMs?: number;
}

/**
 * Positions and ETAs of the waiting jobs this process shows: which replies to refresh and when,
 * from one batched read of the queue per refresh however many jobs wait and events arrive.
 */
export class QueueBoard {
  private readonly queued = new Set<BoardEntry>();
  /** Freshly queued jobs waiting for their first edit, with the interaction's first answer when that is still to give. */
  private readonly fresh = new Map<BoardEntry, FirstAnswer | undefined>();
  private freshTimer: NodeJS.Immediate | undefined;
  private readonly durations = new DurationWindow(DURATION_WINDOW);
  /** jobId → when its last `active` event arrived (ms). */
  private readonly activeSince = new Map<string, number>();
  private readonly queueRefreshMs: number;
  private refreshTimer: NodeJS.Timeout | undefined;
  private refreshDueAt = 0;
  private refreshing: Promise<void> | undefined;
  private refreshAgain = false;
  private lastRefreshAt = 0;
  private stopped = false;

  constructor(private readonly o: QueueBoardOptions) {
    this.queueRefreshMs = o.queueRefreshMs ?? 1000;
  }

  /** Older run times (newest first), so ETAs work from the first job after a restart. */
  seed(samples: readonly DurationSample[]): void {
    this.durations.seed(samples);
  }

  /** A job finished: its run time feeds the ETA. */
  finished(sample: DurationSample): void {
    this.durations.add(sample);
  }

  /** Recent run times (routing estimates a guild's own box line from them). */
  recentRuns(): readonly DurationSample[] {
    return this.durations.samples();
  }

  /** The entry waits in the queue: its reply shows its place from now on. */
  wait(e: BoardEntry, fresh = false): void {
    e.phase = 'queued';
    if (fresh) e.placeEditAt = 0;
    e.live.waitInQueue(fresh);
    if (!e.live.isClosed) this.queued.add(e);
  }

  /** The entry runs (or is done with the queue): progress edits take over. */
  run(e: BoardEntry): void {
    e.phase = 'running';
    e.live.running();
    this.drop(e);
  }

  /** Stops position updates of an entry; with none left to update, no refresh timer stays armed. */
  drop(e: BoardEntry): void {
    this.queued.delete(e);
    if (this.queued.size === 0 && this.refreshTimer) {
      clearTimeout(this.refreshTimer);
      this.refreshTimer = undefined;
    }
  }

  /** A worker took a job: a slot is busy from now; every place behind it moved. */
  started(jobId: string): void {
    this.activeSince.delete(jobId);
    this.activeSince.set(jobId, this.o.now());
    if (this.activeSince.size > ACTIVE_SEEN_MAX) this.activeSince.delete(this.activeSince.keys().next().value!);
    this.requestRefresh();
  }

  /** A job finished, failed an attempt or was removed: a slot or a place in the queue freed up. */
  left(jobId: string): void {
    this.activeSince.delete(jobId);
    this.requestRefresh();
  }

  /** A job (re)entered the queue: a new one may go ahead of ours; ours may be back after a failed attempt or a stall. */
  entered(jobId: string, requeued: boolean): void {
    if (requeued) this.activeSince.delete(jobId);
    this.requestRefresh();
  }

  /**
   * Shows a freshly queued job's place: its place and ETA if it waits, else "you are next" (an idle
   * worker took it already; progress edits follow). At once, so its Cancel button is there before
   * a worker can start it; the jobs a burst queues in the same turn of the event loop share one
   * position read.
   */
  showFirst(e: BoardEntry, answer?: FirstAnswer): void {
    this.fresh.set(e, answer);
    this.freshTimer ??= setImmediate(() => void this.showFresh());
  }

  private async showFresh(): Promise<void> {
    this.freshTimer = undefined;
    const fresh = [...this.fresh].filter(([e]) => !e.live.isClosed);
    const entries = fresh.map(([e]) => e);
    this.fresh.clear();
    if (entries.length === 0 || this.stopped) return;
    let snap: QueueSnapshot | undefined;
    try {
      snap = await this.o.positions.read(entries.map((e) => e.jobId));
    } catch (err) {
      this.o.log.debug({ err, jobs: entries.length }, 'queue positions unavailable');
    }
    const render = snap ? this.renderer(snap) : undefined;
    for (const [e, answer] of fresh) {
      let body = queuedBody(e.jobId, e.request, null);
      const place = snap?.places.get(e.jobId);
      if (snap && render && place?.state === 'waiting' && e.phase === 'new') {
        this.wait(e);
        body = render(e, place.ahead);
      } else if (snap) {
        body = this.renderer(snap, e.jobId)(e, 0);
      } else if (e.phase === 'new') {
        // The read failed (a Redis hiccup): the job most likely waits, so it goes on the board
        // and the next refresh shows its place (or hands it to progress if a worker has it).
        this.wait(e);
        body = queuedBody(e.jobId, e.request, 'unplaced');
      }
      e.placeEditAt = this.o.now();
      void (answer ? e.live.answerFirst(body, answer) : e.live.showFirst(body));
    }
    if (!snap) this.requestRefresh();
  }

  /** Where each job stands in the queue right now (one round trip), as its reply shows it; jobs not waiting are absent. */
  async positionsOf(jobIds: readonly string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    if (jobIds.length === 0) return out;
    const snap = await this.o.positions.read(jobIds);
    const { line } = boxLine(snap, this.o.now());
    for (const [id, place] of snap.places) if (place.state === 'waiting') out.set(id, place.ahead + line + 1);
    return out;
  }

  /** Asks for a position refresh soon (coalesced: one read per queueRefreshMs however many events arrive). */
  requestRefresh(): void {
    if (this.stopped || this.queued.size === 0) return;
    if (this.refreshing) {
      this.refreshAgain = true;
      return;
    }
    const due = Math.max(this.o.now(), this.lastRefreshAt + this.queueRefreshMs);
    if (this.refreshTimer && this.refreshDueAt <= due) return;
    this.armRefresh(due);
  }

  /** Stops refreshing and waits for a refresh under way. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.refreshTimer = undefined;
    if (this.freshTimer) clearImmediate(this.freshTimer);
    this.freshTimer = undefined;
    await this.refreshing;
  }

  private armRefresh(at: number): void {
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.refreshDueAt = at;
    this.refreshTimer = setTimeout(
      () => {
        this.refreshTimer = undefined;
        this.refreshing = this.refresh()
          .catch((err: unknown) => this.o.log.debug({ err }, 'queue position refresh failed'))
          .finally(() => {
            this.refreshing = undefined;
            this.lastRefreshAt = this.o.now();
            if (this.stopped || this.queued.size === 0) return;
            // Events during the read: go again soon. Otherwise a slow tick keeps far positions and the ETA current.
            const again = this.refreshAgain;
            this.refreshAgain = false;
            this.armRefresh(this.lastRefreshAt + (again ? this.queueRefreshMs : FAR_EVERY_MS));
          });
      },
      Math.max(0, at - this.o.now()),
    );
  }

  /** One batched position read for every queued job this process shows, then edits where the text changed. */
  private async refresh(): Promise<void> {
    const jobs = [...this.queued].filter((e) => {
      const keep = !e.live.isClosed && !e.live.quiet && this.o.ownsGuild(e.guildId) && e.live.reachable();
      if (!keep) this.drop(e);
      return keep;
    });
    if (jobs.length === 0) return;
    const snap = await this.o.positions.read(jobs.map((e) => e.jobId));
    if (this.stopped) return;
    const now = this.o.now();
    const render = this.renderer(snap);
    const changed: { e: BoardEntry; ahead: number; body: MessageBody }[] = [];
    for (const e of jobs) {
      const place = snap.places.get(e.jobId);
      if (e.live.isClosed || e.phase !== 'queued' || !place) continue;
      // Not waiting any more: a worker has it (progress takes over) or it has finished.
      if (place.state === 'other') this.run(e);
      if (place.state !== 'waiting') continue;
      const body = render(e, place.ahead);
      if (body.content !== e.live.shownPlace) changed.push({ e, ahead: place.ahead, body });
    }
    const far = changed.filter((c) => c.ahead >= FRONT_POSITIONS && now - c.e.placeEditAt >= FAR_EVERY_MS);
    far.sort((a, b) => a.e.placeEditAt - b.e.placeEditAt);
    const chosen = [...changed.filter((c) => c.ahead < FRONT_POSITIONS), ...far.slice(0, FAR_EDITS_PER_REFRESH)];
    for (const { e, body } of chosen) {
      e.placeEditAt = now;
      e.live.offerPlace(body);
    }
  }

  /**
   * Renders queued messages against one snapshot; what every job shares is worked out once.
   * `runningSelf`: that job is among the running ones already and must not wait for itself.
   */
  private renderer(snap: QueueSnapshot, runningSelf?: string): (e: BoardEntry, ahead: number) => MessageBody {
    const now = this.o.now();
    // With GPU boxes, the boxes are the slots (one job each, whatever the workers' concurrency).
    const { boxes, line } = boxLine(snap, now);
    const active = runningSelf ? Math.max(0, snap.active - 1) : snap.active;
    const running = boxes > 0 ? Math.min(Math.max(0, active - line), boxes) : active;
    // The most recently started jobs are the likeliest to be the ones still running.
    const starts = running > 0 ? [...this.activeSince].filter(([id]) => id !== runningSelf).slice(-running) : [];
    const shared = {
      running,
      runningElapsedMs: starts.map(([, at]) => now - at),
      slots: boxes > 0 ? boxes : liveSlots(snap.statuses, now, STATUS_STALE_MS),
      samples: samplesInUse(this.durations.samples(), snap.statuses, now, STATUS_STALE_MS),
    };
    return (e, ahead) => {
      const route = previewRoute(snap.statuses, {
        preset: e.request.preset,
        count: e.request.count,
        paidAllowed: e.paidAllowed ?? true,
        now,
        staleMs: STATUS_STALE_MS,
      });
      const place = ahead + line;
      return queuedBody(e.jobId, e.request, [place + 1, estimateEta({ ...shared, ahead: place, count: e.request.count })], route.paid);
    };
  }
}

/**
 * The GPU boxes jobs can run on now, and the jobs workers hold while they wait for one: those are
 * ahead of every job still in the queue, so a waiting job's place counts them (its reply and
 * /quota alike).
 */
function boxLine(snap: QueueSnapshot, now: number): { boxes: number; line: number } {
  const boxes = boxSlots(snap.statuses, now, STATUS_STALE_MS);
  return { boxes, line: boxes > 0 ? (snap.boxLine ?? 0) : 0 };
}
