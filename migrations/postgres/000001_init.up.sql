-- Identifiers use the "C" collation: the store contract orders ids by their
-- bytes (chat lists, member lists, group pages), whatever the database's
-- default locale is. Client-chosen byte strings (cmid) and opaque message
-- bodies are bytea: text cannot hold NUL or invalid UTF-8.

CREATE TABLE users (
    id            text COLLATE "C" PRIMARY KEY,
    username      text COLLATE "C" NOT NULL UNIQUE,
    password_hash bytea NOT NULL,
    created_at    timestamptz NOT NULL
);

CREATE TABLE groups (
    id         text COLLATE "C" PRIMARY KEY,
    name       text NOT NULL,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL
);

-- Deleting a group deletes its memberships in the same statement.
CREATE TABLE group_members (
    group_id  text COLLATE "C" NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id   text COLLATE "C" NOT NULL,
    role      text NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    joined_at timestamptz NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
-- "Which groups is this user in", paged by group id.
CREATE INDEX group_members_by_user ON group_members (user_id, group_id);

-- A user's devices. A push token belongs to one device at most, so a phone
-- that changes account stops receiving the old account's pushes.
CREATE TABLE devices (
    user_id    text COLLATE "C" NOT NULL,
    device_id  text COLLATE "C" NOT NULL,
    platform   text NOT NULL,
    push_token text NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
CREATE UNIQUE INDEX devices_push_token ON devices (push_token) WHERE push_token <> '';

-- One row per (user, chat): the user's chat list with its cursors. The
-- primary key serves both a single entry and the whole list in chat order.
CREATE TABLE chat_states (
    user_id       text COLLATE "C" NOT NULL,
    chat_id       text COLLATE "C" NOT NULL,
    delivered_seq bigint NOT NULL DEFAULT 0,
    read_seq      bigint NOT NULL DEFAULT 0,
    left_chat     boolean NOT NULL DEFAULT false,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (user_id, chat_id)
);

-- The message log, used when store.messages = postgres. Message ids are
-- unsigned 64-bit values stored with the same bits in a bigint.
CREATE TABLE messages (
    chat_id  text COLLATE "C" NOT NULL,
    seq      bigint NOT NULL CHECK (seq > 0),
    id       bigint NOT NULL,
    sender   text NOT NULL,
    cmid     bytea NOT NULL,
    type     text NOT NULL,
    body     bytea NOT NULL,
    reply_to bigint NOT NULL DEFAULT 0,
    sent_at  timestamptz NOT NULL,
    PRIMARY KEY (chat_id, seq)
);

-- Dedupe records; rows older than the 24 h window are ignored by readers
-- and deleted by the store's sweeper.
CREATE TABLE dedupe (
    sender  text COLLATE "C" NOT NULL,
    cmid    bytea NOT NULL,
    chat_id text NOT NULL,
    seq     bigint NOT NULL,
    id      bigint NOT NULL,
    sent_at timestamptz NOT NULL,
    PRIMARY KEY (sender, cmid)
);
CREATE INDEX dedupe_by_sent_at ON dedupe (sent_at);
