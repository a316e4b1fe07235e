/** true when generated/ is missing or was generated from another schema or Prisma version. */
export function isClientStale(): boolean;
/**
 * Generates the Prisma client into generated/prisma.
 * @returns true when it generated, false when the client was already current.
 */
export function generatePrismaClient(opts?: { ifStale?: boolean; args?: string[]; quiet?: boolean }): boolean;
