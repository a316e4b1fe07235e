-- Issue 16: every admission read the guild's paid spend this month by summing its paid ledger rows:
-- 72 ms p50 per /imagine for a guild with 100 000 paid attempts this month (bench/job-row.ts,
-- BENCH_PAID_ROWS=100000), growing all month. The database now keeps that total as ledger rows are
-- inserted, whoever inserts them: a bot of the version before this one, still settling while the
-- migrations run or until it is stopped (an upgrade without Docker, `npm run db:migrate` then a
-- restart, or several bot processes restarted one by one), books rows the total must see too.
-- Admission reads one row. tests/bot/month-spend.test.ts holds this.
CREATE TABLE "guild_month_spend" (
    "guild_id" TEXT NOT NULL,
    "month" DATE NOT NULL,
    "spent_usd" DECIMAL(14,6) NOT NULL DEFAULT 0,

    CONSTRAINT "guild_month_spend_pkey" PRIMARY KEY ("guild_id","month")
);

-- No settle inserts ledger rows until this migration commits: the total below and the trigger
-- then account for every row, those of a settle under way when it started included.
LOCK TABLE "cost_ledger" IN SHARE ROW EXCLUSIVE MODE;

-- The rule is core/budget.ts's: paid families, the UTC month the row was booked in.
CREATE FUNCTION "guild_month_spend_add"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO "guild_month_spend" AS g ("guild_id", "month", "spent_usd")
  VALUES (NEW."guild_id", date_trunc('month', NEW."created_at" AT TIME ZONE 'UTC')::date, NEW."cost_usd")
  ON CONFLICT ("guild_id", "month") DO UPDATE SET "spent_usd" = g."spent_usd" + EXCLUDED."spent_usd";
  RETURN NULL;
END
$$;

-- Per paid row only: a GPU box's rows (most of them) never call the function.
CREATE TRIGGER "cost_ledger_month_spend" AFTER INSERT ON "cost_ledger" FOR EACH ROW
  WHEN (split_part(NEW."backend", '#', 1) IN ('replicate', 'huggingface'))
  EXECUTE FUNCTION "guild_month_spend_add"();

-- What the ledger already holds.
INSERT INTO "guild_month_spend" ("guild_id", "month", "spent_usd")
SELECT "guild_id", date_trunc('month', "created_at" AT TIME ZONE 'UTC')::date, sum("cost_usd")
FROM "cost_ledger"
WHERE split_part("backend", '#', 1) IN ('replicate', 'huggingface')
GROUP BY 1, 2;

-- Only the month's sum read it.
DROP INDEX "cost_ledger_paid_idx";
