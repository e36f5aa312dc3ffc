-- p2law store, version 3: how many times a worker has started each job, so that a job whose
-- run kills the process is failed after its second interrupted start instead of resumed forever.
ALTER TABLE calibrations ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
