-- p2law store, version 2: calibration jobs, the runs they produced, and their event logs.

CREATE TABLE calibrations (
    id          INTEGER PRIMARY KEY,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    -- queued | running | done | failed | cancelled
    status      TEXT    NOT NULL,
    -- the CalibrationRequest (JSON)
    request     TEXT    NOT NULL,
    units       INTEGER NOT NULL,
    device      TEXT,
    fit_id      INTEGER REFERENCES fits(id) ON DELETE SET NULL,
    error       TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);

-- A finished unit's curve is stored as a run (through an upload of its canonical CSV) and linked here.
CREATE TABLE calibration_runs (
    job_id  INTEGER NOT NULL REFERENCES calibrations(id) ON DELETE CASCADE,
    unit    TEXT    NOT NULL,
    run_id  INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    PRIMARY KEY (job_id, unit)
);

CREATE TABLE calibration_events (
    job_id  INTEGER NOT NULL REFERENCES calibrations(id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    event   TEXT    NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
