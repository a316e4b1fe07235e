-- AlterTable
ALTER TABLE "jobs" ADD COLUMN     "model" TEXT,
ADD COLUMN     "model_version" TEXT,
ADD COLUMN     "sampler" TEXT;
