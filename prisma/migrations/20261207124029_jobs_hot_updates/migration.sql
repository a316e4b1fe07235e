-- Issue 16: a job's row is updated three times (started, settled, delivered). Status was in two
-- indexes, so each update added an entry to all eight of the table's indexes. With no index on a
-- column that starting or settling writes, those two updates stay on the row's page (HOT) and
-- touch no index; fillfactor 80 leaves the page room for them. The replacements serve the same
-- reads: /quota and /forget by member and day, the ETA's recent run times by delivery time.
-- tests/bot/job-row-updates.test.ts holds this.

-- DropIndex
DROP INDEX "jobs_guild_id_user_id_status_idx";

-- DropIndex
DROP INDEX "jobs_status_delivered_at_idx";

-- CreateIndex
CREATE INDEX "jobs_guild_id_user_id_day_idx" ON "jobs"("guild_id", "user_id", "day");

-- CreateIndex
CREATE INDEX "jobs_delivered_at_idx" ON "jobs"("delivered_at");

-- New pages keep a fifth free for in-place updates (existing ones gain it as they are rewritten).
ALTER TABLE "jobs" SET (fillfactor = 80);
