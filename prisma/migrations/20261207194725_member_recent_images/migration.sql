-- A member's turn in the queue goes by their images of the last 24 hours, not the UTC day's count
-- (which starts again at midnight): the row keeps the day before `day` too (core/quota.ts).
ALTER TABLE "member_usage" ADD COLUMN "prev_images" INTEGER NOT NULL DEFAULT 0;

-- The day before each row's day, from the jobs that were not refunded.
UPDATE "member_usage" m SET "prev_images" = s.images
FROM (
  SELECT j."guild_id", j."user_id", sum(j."image_count")::int AS images
  FROM "jobs" j JOIN "member_usage" u ON u."guild_id" = j."guild_id" AND u."user_id" = j."user_id" AND j."day" = u."day" - 1
  WHERE j."status" IN ('queued', 'running', 'succeeded')
  GROUP BY 1, 2
) s
WHERE m."guild_id" = s."guild_id" AND m."user_id" = s."user_id";
