-- p2law store, version 4 (PostgreSQL): tokens replaced for good.
CREATE TABLE revoked_tokens (
    sha256      TEXT PRIMARY KEY,
    revoked_at  TEXT NOT NULL
);
