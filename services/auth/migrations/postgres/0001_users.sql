-- Users of Switchboard. Emails are stored lower-cased and trimmed, so the
-- unique index is case-insensitive in effect. password_hash is an argon2 PHC
-- string, NULL for users who cannot log in (seeded load-test users).
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL,
    password_hash TEXT,
    role          TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    token_version BIGINT NOT NULL DEFAULT 0,
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

CREATE UNIQUE INDEX users_email_key ON users (email);
