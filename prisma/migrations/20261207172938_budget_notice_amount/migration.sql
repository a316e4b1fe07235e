-- A budget alert is sent once per threshold per budget in force, not per month: a moderator who
-- raises the budget after the 100 % alert must be warned again at 80 %/100 % of the new amount.
-- The notice records the budget it was sent for; a claim for another amount takes the row over.

-- AlterTable
ALTER TABLE "budget_notices" ADD COLUMN     "budget_usd" DECIMAL(12,6);

-- Notices sent while the guild's own budget was already the current one were sent for it. The
-- others (budget changed since, or the deployment default, unknown here) stay NULL: the next claim
-- takes them over, at worst repeating one alert this month rather than missing one.
UPDATE "budget_notices" n SET "budget_usd" = s."monthly_budget_usd"
  FROM "guild_settings" s
  WHERE s."guild_id" = n."guild_id" AND s."monthly_budget_usd" IS NOT NULL AND s."updated_at" <= n."created_at";
