-- Everyone who uploaded each blob. Identical bytes uploaded by two accounts (two submitters
-- with the same input) serve both: each upload proves its account holds the bytes. A blob's
-- row in `blobs` keeps its first uploader; what an account may read or have matched is
-- decided here.
CREATE TABLE blob_uploaders (
    digest TEXT NOT NULL,
    uploader TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (digest, uploader)
);
INSERT INTO blob_uploaders (digest, uploader, created_at)
    SELECT digest, uploader, created_at FROM blobs;
