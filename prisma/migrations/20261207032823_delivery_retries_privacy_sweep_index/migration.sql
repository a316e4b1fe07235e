-- Issue 15: bounded delivery retries, members' data that can be forgotten, a sweep served by an index.

-- Delivery: how often posting was tried, when the next try is due, Discord's last answer, and when it was given up.
ALTER TABLE "jobs" ADD COLUMN "delivery_attempts" INTEGER NOT NULL DEFAULT 0,
ADD COLUMN "next_delivery_at" TIMESTAMPTZ(3),
ADD COLUMN "delivery_error" TEXT,
ADD COLUMN "undeliverable_at" TIMESTAMPTZ(3);

-- Privacy: prompts, parameters and interaction tokens can be erased (/forget, RETENTION_DAYS, token expiry).
ALTER TABLE "jobs" ADD COLUMN "forgotten_at" TIMESTAMPTZ(3),
ADD COLUMN "forgotten_reason" TEXT,
ALTER COLUMN "params" DROP NOT NULL,
ALTER COLUMN "interaction_token" DROP NOT NULL;

-- The sweep's query: jobs whose delivery is not finished, oldest first (keyset pagination on created_at, id).
-- Partial, so it holds only the handful of open jobs however large the table grows.
CREATE INDEX "jobs_open_idx" ON "jobs"("created_at", "id") WHERE "delivered_at" IS NULL AND "undeliverable_at" IS NULL;

-- Retention: jobs whose prompts are still kept, oldest first.
CREATE INDEX "jobs_retained_idx" ON "jobs"("created_at") WHERE "forgotten_at" IS NULL;

-- Interaction tokens still stored (they are erased once dead): a few minutes' worth of rows.
CREATE INDEX "jobs_live_token_idx" ON "jobs"("created_at") WHERE "interaction_token" IS NOT NULL;

-- `npm run status`: results given up on.
CREATE INDEX "jobs_undeliverable_idx" ON "jobs"("undeliverable_at") WHERE "undeliverable_at" IS NOT NULL;
