-- The uploads in progress, shared by every replica of one database: an account's slots and
-- bytes, and the bytes the blob store must keep room for, count every replica's uploads (each
-- replica counting only its own admitted N times as much with N replicas). A row lives while
-- its upload streams in: its replica renews `expires_at` (unix seconds) as it goes and deletes
-- the row when the upload ends; the row of a replica that died lapses on its own.
CREATE TABLE upload_reservations (
    id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX upload_reservations_by_account ON upload_reservations (account);
