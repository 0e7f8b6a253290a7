-- What the coordinator itself knows beside the chain's mirror: job times and a log of job state
-- changes (both written by the indexer), stored blobs, workers' outputs and receipts, workers'
-- heartbeats, used request nonces, and the leader lease. Portable SQL (SQLite and PostgreSQL).

-- When the job was assigned and its result committed (timestamps of the blocks that did it).
ALTER TABLE jobs ADD COLUMN assigned_at BIGINT;
ALTER TABLE jobs ADD COLUMN completed_at BIGINT;
-- The job's dispute as JobMgr's `get_job` shows it (JSON: disputer, evidence_hash, bond,
-- opened_at), once one was opened.
ALTER TABLE jobs ADD COLUMN dispute TEXT;

-- Every job state change the indexer applied, in chain order: the server-sent event streams
-- read it, so every replica serves the same sequence. `recorded_at` is the coordinator's clock
-- when it was indexed (queue-wait and retention use it).
CREATE TABLE job_events (
    sequence BIGINT PRIMARY KEY,
    job_id BIGINT NOT NULL,
    submitter TEXT NOT NULL,
    state TEXT NOT NULL,
    worker TEXT,
    output_hash TEXT,
    block_number BIGINT NOT NULL,
    tx_hash TEXT NOT NULL,
    recorded_at BIGINT NOT NULL
);
CREATE INDEX job_events_by_job ON job_events (job_id, sequence);
CREATE INDEX job_events_by_submitter ON job_events (submitter, sequence);

-- Blobs in the blob store (content-addressed by SHA-256).
CREATE TABLE blobs (
    digest TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    uploader TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Outputs (and receipts) uploaded by a job's assigned worker. A released job may be run by
-- another worker: one row per (job, worker).
CREATE TABLE job_outputs (
    job_id BIGINT NOT NULL,
    worker TEXT NOT NULL,
    output_hash TEXT NOT NULL,
    size BIGINT NOT NULL,
    uploaded_at BIGINT NOT NULL,
    receipt TEXT,
    PRIMARY KEY (job_id, worker)
);
CREATE INDEX job_outputs_by_hash ON job_outputs (output_hash);

-- Each worker's last heartbeat to the coordinator.
CREATE TABLE worker_liveness (
    address TEXT PRIMARY KEY,
    last_seen BIGINT NOT NULL,
    running_jobs BIGINT NOT NULL,
    capacity BIGINT NOT NULL,
    models TEXT NOT NULL,
    agent_version TEXT NOT NULL
);

-- Request nonces accepted within the signature window (a repeat is a replay).
CREATE TABLE request_nonces (
    account TEXT NOT NULL,
    nonce TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (account, nonce)
);
CREATE INDEX request_nonces_by_expiry ON request_nonces (expires_at);

-- The leader lease: one replica at a time runs the indexer, matcher and keepers. `epoch`
-- grows with every change of holder and fences the index writes of a deposed leader.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
INSERT INTO leases (name, holder, epoch, expires_at_ms) VALUES ('leader', '', 0, 0);
