import { createHash } from 'node:crypto';

/**
 * A GPU box's identity is its API base, normalised: scheme, host, port and path, without
 * credentials, query, fragment or trailing slashes. Every worker configured with the same box
 * shares its lease, whatever position the box has in that worker's A1111_URL or COMFYUI_URL.
 */
export function normalizeBoxUrl(raw: string): string {
  const u = new URL(raw);
  const path = u.pathname.replace(/\/+$/, '');
  // URL lowercases the host and drops a scheme's default port already.
  return `${u.protocol}//${u.host}${path}`;
}

/** Short key-safe id of a box (its Redis keys and status reports use it). */
export function boxIdOf(url: string): string {
  return createHash('sha256').update(normalizeBoxUrl(url)).digest('hex').slice(0, 16);
}
