-- Every message accepted by an edge, stored once (the id is the edge's UUIDv7).
CREATE TABLE messages (
    id            TEXT PRIMARY KEY,
    -- 'room' | 'private' | 'broadcast' | 'announcement'
    kind          TEXT NOT NULL CHECK (kind IN ('room', 'private', 'broadcast', 'announcement')),
    -- set for room messages
    room          TEXT,
    sender_id     TEXT NOT NULL,
    sender_email  TEXT NOT NULL,
    -- set for private messages
    recipient     TEXT,
    -- private messages: the two user ids as a sorted JSON array, so both
    -- directions of one conversation share one index range
    conversation  TEXT,
    body          TEXT NOT NULL,
    -- acceptance time at the edge, epoch milliseconds
    created_at    BIGINT NOT NULL,
    -- 0 while a private message waits for its offline recipient; 1 otherwise
    delivered     INTEGER NOT NULL DEFAULT 1,
    -- when messaging wrote the row, epoch milliseconds
    stored_at     BIGINT NOT NULL
);

CREATE INDEX messages_room_history ON messages (room, created_at, id) WHERE kind = 'room';
CREATE INDEX messages_conversation_history ON messages (conversation, created_at, id) WHERE kind = 'private';
CREATE INDEX messages_pending ON messages (recipient, created_at, id) WHERE delivered = 0;
