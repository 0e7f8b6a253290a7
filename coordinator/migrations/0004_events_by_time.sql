-- The dashboard's recent minutes read job events by when they were recorded.
CREATE INDEX job_events_by_recorded_at ON job_events (recorded_at);
