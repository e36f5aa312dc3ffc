-- p2law store, version 5 (PostgreSQL): a job's units as rows, for workers that share a database
-- (`p2law worker`). Each worker claims one unit at a time under a lease timed by the
-- database's clock; a unit whose lease ran out (its worker died) is claimed again. A unit is
-- `done` once, in the transaction that stores its curve. Jobs run by the in-process worker of
-- a SQLite server have no rows here.
CREATE TABLE calibration_units (
    job_id      BIGINT  NOT NULL REFERENCES calibrations(id) ON DELETE CASCADE,
    -- `pretrain:<parent>`, a unit's key (`p2-xs/depth/0.25`), or `fit`
    unit        TEXT    NOT NULL,
    -- pretrain | train | fit
    kind        TEXT    NOT NULL,
    -- the order units are handed out in
    ord         BIGINT  NOT NULL,
    -- the unit that must be done first (a parent's pretraining); `fit` waits for every other
    depends     TEXT,
    -- queued | running | done
    status      TEXT    NOT NULL DEFAULT 'queued',
    worker      TEXT,
    -- seconds since 1970 by the database's clock
    lease_until DOUBLE PRECISION,
    attempts    BIGINT  NOT NULL DEFAULT 0,
    run_id      BIGINT  REFERENCES runs(id) ON DELETE SET NULL,
    PRIMARY KEY (job_id, unit)
);
CREATE INDEX calibration_units_open ON calibration_units (status, job_id, ord);
