-- How many inputs a job carries: 1, or a batch's count (JobMgr's `submit_batch`, whose input
-- and output hashes are those of its manifests).
ALTER TABLE jobs ADD COLUMN items BIGINT NOT NULL DEFAULT 1;
