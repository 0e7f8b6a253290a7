-- The index: a rebuildable mirror of the chain (JobMgr and CDC Pool), written by the indexer.
-- Portable SQL: the same file runs on SQLite and PostgreSQL. Felts are minimal 0x-hex text,
-- u256 amounts 0x-hex text, SHA-256 digests 64-hex text, flags 0/1 BIGINT.

-- Where each contract's event stream stands; written in the same transaction as the rows
-- its events produced.
CREATE TABLE index_cursors (
    contract TEXT PRIMARY KEY,
    cursor TEXT NOT NULL,
    events_applied BIGINT NOT NULL
);

CREATE TABLE models (
    model_id BIGINT PRIMARY KEY,
    owner TEXT NOT NULL,
    model_hash TEXT NOT NULL,
    min_vram_mb BIGINT NOT NULL,
    required_flags BIGINT NOT NULL,
    min_stake_tier BIGINT NOT NULL,
    min_score BIGINT NOT NULL,
    price TEXT NOT NULL,
    active BIGINT NOT NULL,
    updated_block BIGINT NOT NULL
);

CREATE TABLE jobs (
    job_id BIGINT PRIMARY KEY,
    submitter TEXT NOT NULL,
    model_id BIGINT NOT NULL,
    input_hash TEXT NOT NULL,
    fee TEXT NOT NULL,
    deadline BIGINT NOT NULL,
    min_vram_mb BIGINT NOT NULL,
    required_flags BIGINT NOT NULL,
    min_stake_tier BIGINT NOT NULL,
    min_score BIGINT NOT NULL,
    terms TEXT NOT NULL,
    dispute_bond TEXT NOT NULL,
    state TEXT NOT NULL,
    worker TEXT,
    output_hash TEXT,
    disputer TEXT,
    submitted_block BIGINT NOT NULL,
    updated_block BIGINT NOT NULL
);
CREATE INDEX jobs_by_state ON jobs (state, job_id);
CREATE INDEX jobs_by_submitter ON jobs (submitter, job_id);
CREATE INDEX jobs_by_worker ON jobs (worker, job_id);

-- Each worker as the pool's `get_worker` shows it (read at the block its last event was indexed
-- in): the columns the matcher filters on, and the whole view as JSON.
CREATE TABLE workers (
    address TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    gpu_model TEXT NOT NULL,
    vram_mb BIGINT NOT NULL,
    compute_capability BIGINT NOT NULL,
    flags BIGINT NOT NULL,
    stake TEXT NOT NULL,
    hardware_tier BIGINT NOT NULL,
    stake_tier BIGINT NOT NULL,
    score BIGINT NOT NULL,
    last_heartbeat BIGINT NOT NULL,
    info TEXT NOT NULL,
    updated_block BIGINT NOT NULL
);

-- The current parameters of each contract, as JSON.
CREATE TABLE params (
    contract TEXT PRIMARY KEY,
    params TEXT NOT NULL,
    updated_block BIGINT NOT NULL
);
