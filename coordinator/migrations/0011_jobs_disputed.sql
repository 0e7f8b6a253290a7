-- Jobs whose result was disputed, by state: the arbiters' read rule and retention look up a
-- disputed (or, after a worker-at-fault decision, refunded) job by the blobs its dispute
-- names. Disputes are rare, so the index is small and a submission writes nothing in it.
CREATE INDEX jobs_disputed ON jobs (state, job_id) WHERE dispute IS NOT NULL;
