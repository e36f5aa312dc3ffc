-- p2law store, version 1: uploads kept byte for byte, the runs parsed from them, fits, API tokens.

CREATE TABLE uploads (
    id          INTEGER PRIMARY KEY,
    created_at  TEXT    NOT NULL,
    filename    TEXT    NOT NULL,
    format      TEXT    NOT NULL,
    sha256      TEXT    NOT NULL,
    bytes       BLOB    NOT NULL,
    -- the LogOptions the file was read with, and what the parser understood (JSON)
    options     TEXT    NOT NULL,
    summary     TEXT    NOT NULL
);

CREATE TABLE runs (
    id           INTEGER PRIMARY KEY,
    upload_id    INTEGER REFERENCES uploads(id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    n0           REAL,
    rho          REAL,
    l0           REAL,
    method       TEXT,
    family       TEXT,
    split        TEXT,
    token_source TEXT    NOT NULL,
    created_at   TEXT    NOT NULL
);

CREATE TABLE points (
    run_id  INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    idx     INTEGER NOT NULL,
    tokens  REAL    NOT NULL,
    loss    REAL    NOT NULL,
    PRIMARY KEY (run_id, idx)
) WITHOUT ROWID;

CREATE TABLE fits (
    id          INTEGER PRIMARY KEY,
    created_at  TEXT    NOT NULL,
    law         TEXT    NOT NULL,
    -- the request as resolved (JSON), the runs fitted (JSON array of ids), the FitReport (JSON)
    options     TEXT    NOT NULL,
    run_ids     TEXT    NOT NULL,
    report      TEXT    NOT NULL
);

CREATE TABLE api_tokens (
    id          INTEGER PRIMARY KEY,
    sha256      TEXT    NOT NULL UNIQUE,
    created_at  TEXT    NOT NULL
);
