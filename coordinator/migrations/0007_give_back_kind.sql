-- Whose failure a give-back reports: 1 when the job failed on the worker (counts toward the
-- coordinator's limit of give-backs per job), 0 when the worker could not run it.
ALTER TABLE release_requests ADD COLUMN job_failed BIGINT NOT NULL DEFAULT 1;
