-- Batches' manifests, parsed once (a blob read by an item's digest alone would otherwise mean
-- scanning every batch): records kept apart from the index (an index reset keeps them), keyed
-- by the manifest's digest. `items` is the manifest's length / 32; every rule reading them also
-- requires a job's on-chain `items` to be the same.
CREATE TABLE manifests (
    digest TEXT PRIMARY KEY,
    items BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL
);
CREATE TABLE manifest_items (
    manifest TEXT NOT NULL,
    position BIGINT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (manifest, position)
);
CREATE INDEX manifest_items_by_digest ON manifest_items (digest);
-- The most inputs of a batch a worker runs, from its heartbeats (NULL: single jobs only).
ALTER TABLE worker_liveness ADD COLUMN max_batch_items BIGINT;
