-- Per-chat retention: a group's chat-wide setting (user_id '') or each
-- member's own side of a 1:1 chat (the shorter wins).
CREATE TABLE chat_retention (
    chat_id    text COLLATE "C" NOT NULL,
    user_id    text COLLATE "C" NOT NULL,
    period_ms  bigint NOT NULL CHECK (period_ms > 0),
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (chat_id, user_id)
);

-- The highest seq retention purged per chat, so that a chat emptied by a
-- purge keeps its last seq and its writer never reuses one.
CREATE TABLE message_purges (
    chat_id       text COLLATE "C" PRIMARY KEY,
    purged_through bigint NOT NULL
);
