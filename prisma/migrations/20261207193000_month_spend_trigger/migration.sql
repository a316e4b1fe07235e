-- The month's paid spend (guild_month_spend) is kept by the database as ledger rows are inserted,
-- whoever inserts them. It was kept by the settle statement itself, so a bot of the version before
-- it (still settling while the migrations ran, or until it was stopped: an upgrade without Docker,
-- `npm run db:migrate` then a restart, or several bot processes restarted one by one) booked paid
-- rows the total never saw: the guild could then spend that much past its budget all month.
-- tests/bot/month-spend.test.ts holds this.

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

-- The totals again from the whole ledger: the previous migration's missed what was booked after it
-- read the ledger.
DELETE FROM "guild_month_spend";
INSERT INTO "guild_month_spend" ("guild_id", "month", "spent_usd")
SELECT "guild_id", date_trunc('month', "created_at" AT TIME ZONE 'UTC')::date, sum("cost_usd")
FROM "cost_ledger"
WHERE split_part("backend", '#', 1) IN ('replicate', 'huggingface')
GROUP BY 1, 2;
