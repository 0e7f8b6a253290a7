-- The size limits a worker declares in its heartbeats (NULL: none declared): the matcher
-- offers it no job whose input or model file is larger.
ALTER TABLE worker_liveness ADD COLUMN max_input_bytes BIGINT;
ALTER TABLE worker_liveness ADD COLUMN max_model_bytes BIGINT;
