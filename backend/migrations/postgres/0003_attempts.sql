-- p2law store, version 3 (PostgreSQL): starts counted per job.
ALTER TABLE calibrations ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
