/**
 * Gateway WebSocket (JSON encoding, no compression) as spoken by @discordjs/ws (reference §3–5):
 * Hello → Identify → READY + GUILD_CREATE per guild of the shard; heartbeats ACKed; Resume → RESUMED.
 * @module
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { type RawData, WebSocket, WebSocketServer } from 'ws';
import { shardForGuild } from './ids.js';
import { guildCreate, guildsForShard, readyPayload } from './payloads.js';
import { type FakeState, waitFor } from './state.js';

interface Session {
  id: string;
  shard: [number, number];
  /** Sequence numbers continue across resumes of the same session. */
  seq: number;
  /** Recent dispatches by sequence, replayed on resume like Discord does (the client may not have read them). */
  sent: { s: number; text: string }[];
}

/** Dispatches kept per session for replay; Discord keeps a similar bounded backlog. */
const REPLAY_BACKLOG = 5000;

interface Conn {
  ws: WebSocket;
  session?: Session;
  /** READY + GUILD_CREATEs (or RESUMED) sent: events may now be routed here. */
  ready: boolean;
}

const OP = { dispatch: 0, heartbeat: 1, identify: 2, resume: 6, invalidSession: 9, hello: 10, ack: 11 } as const;

/** The fake gateway; attach it to the HTTP server's `upgrade` event. */
export class FakeGateway {
  private readonly wss = new WebSocketServer({ noServer: true });
  private readonly conns = new Set<Conn>();
  private readonly sessions = new Map<string, Session>();

  constructor(private readonly state: FakeState) {}

  /** Accepts upgrades on `/gateway` (any query, e.g. `?v=10&encoding=json`). */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (new URL(req.url ?? '/', 'http://fake').pathname !== '/gateway') {
      socket.destroy();
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws));
  }

  private onConnection(ws: WebSocket): void {
    const conn: Conn = { ws, ready: false };
    this.conns.add(conn);
    ws.on('close', () => this.conns.delete(conn));
    ws.on('error', () => this.conns.delete(conn));
    ws.on('message', (data: RawData) => this.onMessage(conn, data));
    this.send(conn, {
      op: OP.hello,
      d: { heartbeat_interval: this.state.opts.heartbeatIntervalMs, _trace: ['["fake-gateway",{"micros":0}]'] },
    });
  }

  private send(conn: Conn, payload: { op: number; d: unknown; t?: string }): Promise<void> {
    const full = { op: payload.op, d: payload.d, s: null as number | null, t: payload.t ?? null };
    if (payload.op === OP.dispatch && conn.session) full.s = ++conn.session.seq;
    const text = JSON.stringify(full);
    if (full.s !== null && conn.session) {
      const sent = conn.session.sent;
      sent.push({ s: full.s, text });
      if (sent.length > REPLAY_BACKLOG) sent.splice(0, sent.length - REPLAY_BACKLOG);
    }
    return new Promise((resolve, reject) => {
      if (conn.ws.readyState !== WebSocket.OPEN) return reject(new Error('fake discord: gateway socket is not open'));
      conn.ws.send(text, (err) => (err ? reject(err) : resolve()));
    });
  }

  private dispatch(conn: Conn, t: string, d: unknown): Promise<void> {
    return this.send(conn, { op: OP.dispatch, t, d });
  }

  private onMessage(conn: Conn, data: RawData): void {
    let payload: any;
    try {
      payload = JSON.parse(data.toString());
    } catch {
      conn.ws.close(4002, 'Error while decoding payload.');
      return;
    }
    switch (payload?.op) {
      case OP.heartbeat:
        void this.send(conn, { op: OP.ack, d: null }).catch(() => undefined);
        return;
      case OP.identify:
        void this.identify(conn, payload.d).catch(() => undefined);
        return;
      case OP.resume:
        void this.resume(conn, payload.d).catch(() => undefined);
        return;
      default:
        // Presence updates, member requests, voice state: accepted and ignored.
        if (!conn.session) conn.ws.close(4003, 'Not authenticated.');
    }
  }

  private async identify(conn: Conn, d: any): Promise<void> {
    this.state.identifies.push(d);
    if (d?.token !== this.state.opts.token) return conn.ws.close(4004, 'Authentication failed.');
    if (conn.session) return conn.ws.close(4005, 'Already authenticated.');
    const shard: [number, number] = Array.isArray(d.shard) ? [Number(d.shard[0]), Number(d.shard[1])] : [0, 1];
    if (!(shard[1] >= 1 && shard[0] >= 0 && shard[0] < shard[1])) return conn.ws.close(4010, 'Invalid shard.');
    const session: Session = { id: randomBytes(16).toString('hex'), shard, seq: 0, sent: [] };
    this.sessions.set(session.id, session);
    conn.session = session;
    await this.dispatch(conn, 'READY', readyPayload(this.state, shard, session.id));
    for (const guild of guildsForShard(this.state, shard)) await this.dispatch(conn, 'GUILD_CREATE', guildCreate(this.state, guild));
    conn.ready = true;
  }

  private async resume(conn: Conn, d: any): Promise<void> {
    const session = this.sessions.get(d?.session_id);
    if (d?.token !== this.state.opts.token) return conn.ws.close(4004, 'Authentication failed.');
    if (!session) {
      await this.send(conn, { op: OP.invalidSession, d: false });
      return;
    }
    conn.session = session;
    // Replays what the client has not seen (sent after its last sequence), then RESUMED, as Discord does.
    const after = typeof d?.seq === 'number' ? d.seq : 0;
    for (const m of session.sent.filter((x) => x.s > after)) {
      await new Promise<void>((resolve, reject) => conn.ws.send(m.text, (err) => (err ? reject(err) : resolve())));
    }
    await this.dispatch(conn, 'RESUMED', { _trace: ['["fake-gateway",{"micros":0}]'] });
    conn.ready = true;
  }

  private connFor(guildId: string | undefined): Conn | undefined {
    for (const conn of this.conns) {
      const s = conn.session;
      if (!s || !conn.ready || conn.ws.readyState !== WebSocket.OPEN) continue;
      const owner = guildId ? shardForGuild(guildId, s.shard[1]) : 0;
      if (owner === s.shard[0]) return conn;
    }
    return undefined;
  }

  /**
   * Sends a dispatch on the socket of the shard owning `guildId` (shard 0 for DMs),
   * waiting up to `timeoutMs` for such a socket (e.g. during a reconnect).
   */
  async dispatchTo(guildId: string | undefined, t: string, d: unknown, timeoutMs = 5000): Promise<void> {
    const conn = await waitFor(() => this.connFor(guildId), timeoutMs).catch(() => {
      throw new Error(`fake discord: no identified gateway connection for guild ${guildId ?? '(DM)'}`);
    });
    await this.dispatch(conn, t, d);
  }

  /** Open sockets. */
  connectionCount(): number {
    return [...this.conns].filter((c) => c.ws.readyState === WebSocket.OPEN).length;
  }

  /** Closes every socket with `code` (1006 → abrupt termination). */
  disconnectAll(code: number): void {
    for (const conn of this.conns) {
      if (code === 1006) conn.ws.terminate();
      else conn.ws.close(code, 'fake discord: disconnect');
    }
  }

  /** Terminates sockets and stops accepting upgrades. */
  close(): Promise<void> {
    for (const conn of this.conns) conn.ws.terminate();
    this.conns.clear();
    return new Promise((resolve) => this.wss.close(() => resolve()));
  }
}
