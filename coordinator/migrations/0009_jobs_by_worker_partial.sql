-- A job row has no worker while it is queued (and once cancelled or expired unassigned): the
-- index of jobs by worker keeps only the rows that have one, so a submission, a cancellation
-- or a release writes no entry in it. `worker = $1` implies `worker IS NOT NULL`, so SQLite and
-- PostgreSQL still use it for a worker's jobs.
DROP INDEX jobs_by_worker;
CREATE INDEX jobs_by_worker ON jobs (worker, job_id) WHERE worker IS NOT NULL;
