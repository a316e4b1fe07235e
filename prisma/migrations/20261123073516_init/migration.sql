-- CreateEnum
CREATE TYPE "nsfw_mode" AS ENUM ('strict', 'nsfw_channels');

-- CreateEnum
CREATE TYPE "job_kind" AS ENUM ('txt2img', 'inpaint');

-- CreateEnum
CREATE TYPE "job_status" AS ENUM ('queued', 'running', 'succeeded', 'failed', 'cancelled');

-- CreateTable
CREATE TABLE "guild_settings" (
    "guild_id" TEXT NOT NULL,
    "daily_limit" INTEGER,
    "nsfw_mode" "nsfw_mode" NOT NULL DEFAULT 'strict',
    "monthly_budget_usd" DECIMAL(12,6),
    "log_channel_id" TEXT,
    "moderator_role_id" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "guild_settings_pkey" PRIMARY KEY ("guild_id")
);

-- CreateTable
CREATE TABLE "user_quota_overrides" (
    "guild_id" TEXT NOT NULL,
    "user_id" TEXT NOT NULL,
    "daily_limit" INTEGER NOT NULL,
    "set_by" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "user_quota_overrides_pkey" PRIMARY KEY ("guild_id","user_id")
);

-- CreateTable
CREATE TABLE "banned_words" (
    "guild_id" TEXT NOT NULL,
    "word" TEXT NOT NULL,
    "added_by" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "banned_words_pkey" PRIMARY KEY ("guild_id","word")
);

-- CreateTable
CREATE TABLE "member_usage" (
    "guild_id" TEXT NOT NULL,
    "user_id" TEXT NOT NULL,
    "day" DATE NOT NULL,
    "images" INTEGER NOT NULL DEFAULT 0,
    "in_flight" INTEGER NOT NULL DEFAULT 0,

    CONSTRAINT "member_usage_pkey" PRIMARY KEY ("guild_id","user_id")
);

-- CreateTable
CREATE TABLE "jobs" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "guild_id" TEXT NOT NULL,
    "channel_id" TEXT NOT NULL,
    "user_id" TEXT NOT NULL,
    "kind" "job_kind" NOT NULL,
    "status" "job_status" NOT NULL DEFAULT 'queued',
    "params" JSONB NOT NULL,
    "image_count" INTEGER NOT NULL,
    "day" DATE NOT NULL,
    "channel_nsfw" BOOLEAN NOT NULL DEFAULT false,
    "application_id" TEXT NOT NULL,
    "interaction_id" TEXT NOT NULL,
    "interaction_token" TEXT NOT NULL,
    "parent_job_id" UUID,
    "backend" TEXT,
    "seed" BIGINT,
    "cost_usd" DECIMAL(12,6) NOT NULL DEFAULT 0,
    "error_code" TEXT,
    "error_message" TEXT,
    "result" JSONB,
    "reply_message_id" TEXT,
    "result_message_id" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "started_at" TIMESTAMPTZ(3),
    "finished_at" TIMESTAMPTZ(3),
    "delivery_claimed_at" TIMESTAMPTZ(3),
    "delivered_at" TIMESTAMPTZ(3),

    CONSTRAINT "jobs_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "cost_ledger" (
    "id" BIGSERIAL NOT NULL,
    "job_id" UUID NOT NULL,
    "attempt_no" INTEGER NOT NULL,
    "guild_id" TEXT NOT NULL,
    "backend" TEXT NOT NULL,
    "outcome" TEXT NOT NULL,
    "seconds" DECIMAL(12,3) NOT NULL,
    "cost_usd" DECIMAL(12,6) NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "cost_ledger_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "audit_log" (
    "id" BIGSERIAL NOT NULL,
    "guild_id" TEXT NOT NULL,
    "actor_id" TEXT NOT NULL,
    "action" TEXT NOT NULL,
    "target" TEXT,
    "before" JSONB,
    "after" JSONB,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "audit_log_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "budget_notices" (
    "guild_id" TEXT NOT NULL,
    "month" DATE NOT NULL,
    "threshold" INTEGER NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "budget_notices_pkey" PRIMARY KEY ("guild_id","month","threshold")
);

-- CreateIndex
CREATE INDEX "jobs_guild_id_user_id_status_idx" ON "jobs"("guild_id", "user_id", "status");

-- CreateIndex
CREATE INDEX "jobs_guild_id_created_at_idx" ON "jobs"("guild_id", "created_at");

-- CreateIndex
CREATE INDEX "jobs_status_delivered_at_idx" ON "jobs"("status", "delivered_at");

-- CreateIndex
CREATE INDEX "cost_ledger_guild_id_created_at_idx" ON "cost_ledger"("guild_id", "created_at");

-- CreateIndex
CREATE UNIQUE INDEX "cost_ledger_job_id_attempt_no_key" ON "cost_ledger"("job_id", "attempt_no");

-- CreateIndex
CREATE INDEX "audit_log_guild_id_created_at_idx" ON "audit_log"("guild_id", "created_at");

-- AddForeignKey
ALTER TABLE "cost_ledger" ADD CONSTRAINT "cost_ledger_job_id_fkey" FOREIGN KEY ("job_id") REFERENCES "jobs"("id") ON DELETE CASCADE ON UPDATE CASCADE;
