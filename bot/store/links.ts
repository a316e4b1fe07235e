import type { Database } from './prisma.js';

/** A guild's GPU link as stored; the token itself never is (only its sha256). */
export interface LinkRow {
  id: string;
  guildId: string;
  createdBy: string;
  createdAt: Date;
  tokenHash: string;
  tokenExpiresAt: Date;
  redisUser: string | null;
  joinedAt: Date | null;
  revokedAt: Date | null;
  lastError: string | null;
}

/** Who a box's own step (its join) is attributed to in the audit log. */
const BOX_ACTOR = 'gpu-box';

/**
 * gpu_links, with each step's audit row in the same transaction (like SettingsStore): link,
 * rotate, unlink by a moderator; join by the box; a token that expired unused.
 */
export class LinkStore {
  constructor(private readonly db: Pick<Database, 'prisma'>) {}

  async create(guildId: string, actorId: string, id: string, tokenHash: string, tokenExpiresAt: Date): Promise<void> {
    const prisma = await this.db.prisma();
    await prisma.$transaction(async (tx) => {
      await tx.gpuLink.create({ data: { id, guildId, createdBy: actorId, tokenHash, tokenExpiresAt } });
      await tx.auditLog.create({
        data: { guildId, actorId, action: 'gpu link', target: id, after: { tokenExpiresAt: tokenExpiresAt.toISOString() } },
      });
    });
  }

  /** The guild's links not revoked, oldest first. */
  async active(guildId: string): Promise<LinkRow[]> {
    const prisma = await this.db.prisma();
    return prisma.gpuLink.findMany({ where: { guildId, revokedAt: null }, orderBy: { createdAt: 'asc' } });
  }

  async get(guildId: string, id: string): Promise<LinkRow | null> {
    const prisma = await this.db.prisma();
    return prisma.gpuLink.findFirst({ where: { id, guildId } });
  }

  /** Links waiting for their box to trade the token, of every guild (the join watcher serves them all). */
  async pending(now: Date): Promise<LinkRow[]> {
    const prisma = await this.db.prisma();
    return prisma.gpuLink.findMany({ where: { joinedAt: null, revokedAt: null, tokenExpiresAt: { gt: now } }, take: 1000 });
  }

  /** Links whose token expired unused and that are not marked so yet. */
  async expiredUnjoined(now: Date): Promise<LinkRow[]> {
    const prisma = await this.db.prisma();
    return prisma.gpuLink.findMany({
      where: { joinedAt: null, revokedAt: null, tokenExpiresAt: { lte: now }, lastError: null },
      take: 100,
    });
  }

  /** true when this call marked it (every bot process's watcher tries; one announces it). */
  async markExpired(link: LinkRow): Promise<boolean> {
    const prisma = await this.db.prisma();
    return prisma.$transaction(async (tx) => {
      const n = await tx.gpuLink.updateMany({
        where: { id: link.id, joinedAt: null, lastError: null },
        data: { lastError: 'join token expired unused: /admin gpu rotate issues a new one' },
      });
      if (n.count !== 1) return false;
      await tx.auditLog.create({ data: { guildId: link.guildId, actorId: BOX_ACTOR, action: 'gpu token expired', target: link.id } });
      return true;
    });
  }

  /** Records the join of the token `tokenHash` names; false when the link was revoked or rotated meanwhile. */
  async markJoined(link: LinkRow, redisUser: string, host: string, at: Date): Promise<boolean> {
    const prisma = await this.db.prisma();
    return prisma.$transaction(async (tx) => {
      const n = await tx.gpuLink.updateMany({
        where: { id: link.id, tokenHash: link.tokenHash, joinedAt: null, revokedAt: null },
        data: { joinedAt: at, redisUser, lastError: null },
      });
      if (n.count !== 1) return false;
      await tx.auditLog.create({
        data: { guildId: link.guildId, actorId: BOX_ACTOR, action: 'gpu join', target: link.id, after: { host } },
      });
      return true;
    });
  }

  /** A new token for the link; the box must join again. */
  async rotate(link: LinkRow, actorId: string, tokenHash: string, tokenExpiresAt: Date): Promise<void> {
    const prisma = await this.db.prisma();
    await prisma.$transaction(async (tx) => {
      await tx.gpuLink.update({
        where: { id: link.id },
        data: { tokenHash, tokenExpiresAt, joinedAt: null, redisUser: null, lastError: null },
      });
      await tx.auditLog.create({
        data: {
          guildId: link.guildId,
          actorId,
          action: 'gpu rotate',
          target: link.id,
          before: { joinedAt: link.joinedAt?.toISOString() ?? null },
          after: { tokenExpiresAt: tokenExpiresAt.toISOString() },
        },
      });
    });
  }

  async revoke(link: LinkRow, actorId: string, at: Date): Promise<void> {
    const prisma = await this.db.prisma();
    await prisma.$transaction(async (tx) => {
      await tx.gpuLink.update({ where: { id: link.id }, data: { revokedAt: at } });
      await tx.auditLog.create({
        data: {
          guildId: link.guildId,
          actorId,
          action: 'gpu unlink',
          target: link.id,
          before: { joinedAt: link.joinedAt?.toISOString() ?? null },
        },
      });
    });
  }

  async setError(id: string, message: string): Promise<void> {
    const prisma = await this.db.prisma();
    await prisma.gpuLink.update({ where: { id }, data: { lastError: message.slice(0, 500) } });
  }
}
