-- A worker gives back a job assigned to it (it cannot run it); the leader releases the job on
-- chain at its next tick instead of waiting for the job's release limit.
CREATE TABLE release_requests (
    job_id BIGINT NOT NULL,
    worker TEXT NOT NULL,
    reason TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    PRIMARY KEY (job_id, worker)
);
