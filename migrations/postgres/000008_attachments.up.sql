-- Attachment metadata: the bytes live in the blob store under
-- attachments/{id}. No foreign key to users, like the consent tables.
CREATE TABLE attachments (
    id           text COLLATE "C" PRIMARY KEY,
    owner        text COLLATE "C" NOT NULL,
    size         bigint NOT NULL,
    sha256       text NOT NULL,
    content_type text NOT NULL,
    width        integer NOT NULL,
    height       integer NOT NULL,
    thumb_width  integer NOT NULL,
    thumb_height integer NOT NULL,
    created_at   timestamptz NOT NULL,
    -- referenced turns true with the first chat below and never back; the
    -- janitor's index covers only the rows still waiting for one.
    referenced   boolean NOT NULL DEFAULT false
);
CREATE INDEX attachments_unreferenced ON attachments (created_at, id) WHERE NOT referenced;

-- The chats whose messages reference an attachment (its readers' chats).
CREATE TABLE attachment_chats (
    attachment_id text COLLATE "C" NOT NULL REFERENCES attachments ON DELETE CASCADE,
    chat          text COLLATE "C" NOT NULL,
    PRIMARY KEY (attachment_id, chat)
);

-- Bytes uploaded per user and UTC day, for the daily quota.
CREATE TABLE attachment_usage (
    user_id text COLLATE "C" NOT NULL,
    day     text COLLATE "C" NOT NULL,
    bytes   bigint NOT NULL,
    PRIMARY KEY (user_id, day)
);
