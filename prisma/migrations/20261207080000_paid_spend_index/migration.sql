-- Issue 16: every admission sums the guild's paid spend this month (core/budget.ts spentSinceSql).
-- Without this index that sum read every ledger row of the guild (GPU-box attempts included: a
-- busy guild's 30 000 rows a month cost 3.3 ms per /imagine); partial on the paid families, it
-- reads only the paid rows, from the index alone. The predicate must stay exactly the one
-- core/budget.ts writes (tests/store/paid-spend-index.test.ts holds the two together).
CREATE INDEX "cost_ledger_paid_idx" ON "cost_ledger"("guild_id", "created_at") INCLUDE ("cost_usd")
  WHERE split_part("backend", '#', 1) IN ('replicate', 'huggingface');
