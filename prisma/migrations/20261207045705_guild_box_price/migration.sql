-- AlterTable
ALTER TABLE "cost_ledger" ADD COLUMN     "own_usd" DECIMAL(12,6) NOT NULL DEFAULT 0;

-- AlterTable
ALTER TABLE "guild_settings" ADD COLUMN     "gpu_usd_per_hour" DECIMAL(12,6);
