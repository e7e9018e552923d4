-- Users of Switchboard; see migrations/postgres for the meaning of each column.
-- WITHOUT ROWID clusters the table on its text primary key, so VerifyToken's
-- lookup by id is one B-tree search.
CREATE TABLE users (
    id            TEXT PRIMARY KEY NOT NULL,
    email         TEXT NOT NULL,
    password_hash TEXT,
    role          TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    token_version INTEGER NOT NULL DEFAULT 0,
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE UNIQUE INDEX users_email_key ON users (email);
