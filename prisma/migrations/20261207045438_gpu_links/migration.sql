-- CreateTable
CREATE TABLE "gpu_links" (
    "id" TEXT NOT NULL,
    "guild_id" TEXT NOT NULL,
    "created_by" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "token_hash" TEXT NOT NULL,
    "token_expires_at" TIMESTAMPTZ(3) NOT NULL,
    "redis_user" TEXT,
    "joined_at" TIMESTAMPTZ(3),
    "revoked_at" TIMESTAMPTZ(3),
    "last_error" TEXT,

    CONSTRAINT "gpu_links_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "gpu_links_guild_id_created_at_idx" ON "gpu_links"("guild_id", "created_at");
