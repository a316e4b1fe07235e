-- Issue 16: every admission read the guild's paid spend this month by summing its paid ledger rows:
-- 72 ms p50 per /imagine for a guild with 100 000 paid attempts this month (bench/job-row.ts,
-- BENCH_PAID_ROWS=100000), growing all month. The settle statement now keeps this total as it
-- books paid rows (core/budget.ts); admission reads one row.
CREATE TABLE "guild_month_spend" (
    "guild_id" TEXT NOT NULL,
    "month" DATE NOT NULL,
    "spent_usd" DECIMAL(14,6) NOT NULL DEFAULT 0,

    CONSTRAINT "guild_month_spend_pkey" PRIMARY KEY ("guild_id","month")
);

-- What the ledger already holds, by the rule core/budget.ts states (paid families, UTC months).
INSERT INTO "guild_month_spend" ("guild_id", "month", "spent_usd")
SELECT "guild_id", date_trunc('month', "created_at" AT TIME ZONE 'UTC')::date, sum("cost_usd")
FROM "cost_ledger"
WHERE split_part("backend", '#', 1) IN ('replicate', 'huggingface')
GROUP BY 1, 2;

-- Only the month's sum read it.
DROP INDEX "cost_ledger_paid_idx";
