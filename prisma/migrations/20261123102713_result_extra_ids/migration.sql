-- AlterTable
ALTER TABLE "jobs" ADD COLUMN     "result_extra_ids" TEXT[] DEFAULT ARRAY[]::TEXT[];
