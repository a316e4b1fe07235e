/**
 * Generates the Prisma client into generated/prisma.
 * @returns true when it generated, false when the client was already current.
 */
export function generatePrismaClient(opts?: { ifStale?: boolean; args?: string[]; quiet?: boolean }): boolean;
