-- AlterTable
ALTER TABLE "jobs" ADD COLUMN     "upload_limit_bytes" INTEGER NOT NULL DEFAULT 10485760;
