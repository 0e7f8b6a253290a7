-- What an upload's quota and a blob's references are looked up by: an account's uploads, the
-- jobs naming an input, the models naming a file (each was a scan of its table).
CREATE INDEX blob_uploaders_by_uploader ON blob_uploaders (uploader, created_at);
CREATE INDEX jobs_by_input ON jobs (input_hash);
CREATE INDEX models_by_hash ON models (model_hash);
