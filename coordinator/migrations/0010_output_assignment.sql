-- An output belongs to one assignment of its job to its worker: a job released (a timeout, the
-- worker's silence) may be assigned to the same worker again, and the earlier assignment's
-- output must then neither count as the new one's (exempting the worker from a silence
-- release, showing an output present) nor refuse the new one's upload. Rows kept from before
-- take their job's current assignment when the worker still holds it, else none (0).
ALTER TABLE job_outputs ADD COLUMN assigned_at BIGINT NOT NULL DEFAULT 0;
UPDATE job_outputs SET assigned_at = COALESCE(
    (SELECT j.assigned_at FROM jobs j
     WHERE j.job_id = job_outputs.job_id AND j.worker = job_outputs.worker), 0);
