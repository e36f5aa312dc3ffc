-- p2law store, version 4: tokens that `p2law token` (or a new --token) replaced, so that a
-- restart with an old --token cannot silently undo a rotation.
CREATE TABLE revoked_tokens (
    sha256      TEXT    PRIMARY KEY,
    revoked_at  TEXT    NOT NULL
) WITHOUT ROWID;
