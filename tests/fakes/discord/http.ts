/**
 * HTTP pipeline: record → parse body → injected faults → CDN or REST route → reply with
 * rate-limit headers. Unknown routes are answered 599 and collected in `unhandled`.
 * @module
 */

import { createHash } from 'node:crypto';
import { type IncomingMessage, type ServerResponse, STATUS_CODES } from 'node:http';
import { preciseNow } from './ids.js';
import { multipartBoundary, parseMultipart } from './multipart.js';
import type { FakeState, Injection } from './state.js';
import type { Recorded, RecordedFile } from './types.js';
import { apiError, ERR, type Reply } from './validate.js';

/** What a REST handler receives. */
export interface RouteCtx {
  state: FakeState;
  rec: Recorded;
  params: string[];
  query: URLSearchParams;
  json: any;
  files: RecordedFile[];
}

/** A REST route; `pattern` is matched against the path without `/api/v10`. */
export interface Route {
  method: string;
  pattern: RegExp;
  /** Requires `Authorization: Bot <token>`. */
  auth: boolean;
  /** Stable name, used as the rate-limit bucket. */
  name: string;
  handle(ctx: RouteCtx): Reply | Promise<Reply>;
}

const API_PREFIX = '/api/v10';

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function parseBody(rec: Recorded, body: Buffer): void {
  if (body.length === 0) return;
  const contentType = rec.headers['content-type'];
  const boundary = multipartBoundary(contentType);
  if (boundary) {
    for (const part of parseMultipart(body, boundary)) {
      if (part.name === 'payload_json') rec.json = JSON.parse(part.data.toString('utf8'));
      else if (part.filename !== undefined) {
        rec.files.push({
          name: part.name,
          filename: part.filename,
          data: part.data,
          ...(part.contentType ? { contentType: part.contentType } : {}),
        });
      }
    }
  } else if (contentType?.includes('application/json')) {
    rec.json = JSON.parse(body.toString('utf8'));
  }
}

// discord.js encodes `@original` as `%40original`; match and record the decoded path.
function safeDecode(path: string): string {
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}

function bucketOf(name: string): string {
  return createHash('sha1').update(name).digest('hex').slice(0, 32);
}

function rateLimitHeaders(bucket: string, remaining: number, resetAfterS: number): Record<string, string> {
  return {
    'x-ratelimit-bucket': bucket,
    'x-ratelimit-limit': '5',
    'x-ratelimit-remaining': String(remaining),
    'x-ratelimit-reset': ((Date.now() + resetAfterS * 1000) / 1000).toFixed(3),
    'x-ratelimit-reset-after': resetAfterS.toFixed(3),
  };
}

function takeInjection(state: FakeState, method: string, path: string): Injection | undefined {
  const inj = state.injections.find(
    (i) => i.remaining > 0 && path.startsWith(i.pathPrefix) && (!i.method || i.method.toUpperCase() === method),
  );
  if (!inj) return undefined;
  inj.remaining -= 1;
  if (inj.remaining === 0) state.injections.splice(state.injections.indexOf(inj), 1);
  return inj;
}

function injectedReply(inj: Injection, bucket: string): Reply {
  if (inj.status !== 429) return { status: inj.status, body: inj.body ?? { message: STATUS_CODES[inj.status] ?? 'Error', code: 0 } };
  const retry = inj.retryAfterS ?? 0.2;
  return {
    status: 429,
    body: inj.body ?? { message: 'You are being rate limited.', retry_after: retry, global: false },
    headers: { ...rateLimitHeaders(bucket, 0, retry), 'retry-after': String(retry), 'x-ratelimit-scope': 'user' },
  };
}

/** How long the answer to this request is held back, if a test slowed it. */
function slowdown(state: FakeState, rec: Recorded): number {
  const slow = state.slowAnswers.find(
    (s) => s.remaining > 0 && rec.path.startsWith(s.pathPrefix) && (!s.method || s.method.toUpperCase() === rec.method),
  );
  if (!slow) return state.opts.answerDelayMs;
  slow.remaining -= 1;
  if (slow.remaining === 0) state.slowAnswers.splice(state.slowAnswers.indexOf(slow), 1);
  return slow.ms;
}

function send(res: ServerResponse, rec: Recorded, reply: Reply): void {
  rec.status = reply.status;
  rec.answeredAt = preciseNow();
  const headers: Record<string, string> = { ...reply.headers };
  if (reply.body instanceof Buffer) {
    res.writeHead(reply.status, { 'content-length': String(reply.body.length), ...headers });
    res.end(reply.body);
  } else if (reply.body === undefined || reply.status === 204) {
    res.writeHead(reply.status, headers);
    res.end();
  } else {
    const text = JSON.stringify(reply.body);
    res.writeHead(reply.status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), ...headers });
    res.end(text);
  }
}

function serveCdn(state: FakeState, rec: Recorded): Reply {
  const entry = state.cdn.get(safeDecode(rec.path));
  if (!entry) return { status: 404, body: Buffer.from('Not Found'), headers: { 'content-type': 'text/plain' } };
  if ('redirect' in entry) return { status: 302, headers: { location: entry.redirect } };
  return {
    status: 200,
    body: entry.data,
    headers: { 'content-type': entry.contentType ?? 'application/octet-stream', 'cache-control': 'public, max-age=31536000' },
  };
}

async function route(state: FakeState, routes: Route[], rec: Recorded, raw: string): Promise<Reply> {
  if (rec.path.startsWith('/attachments/')) {
    state.cdnRequests.push(rec);
    const inj = takeInjection(state, rec.method, rec.path);
    const reply = inj ? injectedReply(inj, bucketOf('cdn')) : serveCdn(state, rec);
    return rec.method === 'HEAD' ? { ...reply, body: undefined } : reply;
  }
  if (!raw.startsWith(`${API_PREFIX}/`)) {
    state.unhandled.push(rec);
    return apiError(599, 0, `fake discord: unhandled route ${rec.method} ${raw}`);
  }
  rec.path = safeDecode(raw.slice(API_PREFIX.length));
  let params: string[] | undefined;
  const match = routes.find((r) => r.method === rec.method && (params = r.pattern.exec(rec.path)?.slice(1)));
  const bucket = bucketOf(match?.name ?? rec.path);
  const inj = takeInjection(state, rec.method, rec.path);
  if (inj) return injectedReply(inj, bucket);
  if (!match || !params) {
    state.unhandled.push(rec);
    return apiError(599, 0, `fake discord: unhandled route ${rec.method} ${rec.path}`);
  }
  if (match.auth && rec.headers.authorization !== `Bot ${state.opts.token}`) return ERR.unauthorized();
  const reply = await match.handle({ state, rec, params, query: rec.query, json: rec.json, files: rec.files });
  return { ...reply, headers: { ...rateLimitHeaders(bucket, 4, 1), ...reply.headers } };
}

/** Builds the node:http request listener. */
export function createRequestListener(state: FakeState, routes: Route[]) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://fake');
    const rec: Recorded = {
      at: preciseNow(),
      method: (req.method ?? 'GET').toUpperCase(),
      path: url.pathname,
      query: url.searchParams,
      headers: req.headers,
      files: [],
      status: 0,
    };
    state.requests.push(rec);
    void (async () => {
      let reply: Reply;
      try {
        const body = await readBody(req);
        try {
          parseBody(rec, body);
        } catch {
          return send(res, rec, apiError(400, 50109, 'The request body contains invalid JSON.'));
        }
        reply = await route(state, routes, rec, url.pathname);
      } catch (err) {
        reply = apiError(500, 0, `fake discord: handler crashed: ${String(err)}`);
      }
      const ms = slowdown(state, rec);
      if (ms > 0) await new Promise((r) => setTimeout(r, ms));
      send(res, rec, reply);
    })();
  };
}
