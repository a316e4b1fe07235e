/** true when a Redis URL leaves this machine without TLS (credentials and images would cross the network in clear). */
export function isPlaintextRemoteRedis(url: string): boolean {
  const u = new URL(url);
  if (u.protocol === 'rediss:') return false;
  const host = u.hostname.replace(/^\[|\]$/g, '');
  return !(host === 'localhost' || host === '::1' || /^127\./.test(host));
}
