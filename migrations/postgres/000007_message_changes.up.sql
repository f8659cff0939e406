-- Edits, deletes and reactions. Each is a message of its own (change_kind
-- 'edit', 'delete', 'react' or 'unreact' on the seq change_target of the
-- same chat; '' for an ordinary message), and the store applies it to the
-- target in the same transaction: an edit rewrites the target's body and
-- sets edited_at, a delete empties its body and the bodies of its edits and
-- sets deleted_at, a reaction adds or removes a message_reactions row.
ALTER TABLE messages
    ADD COLUMN change_kind   text NOT NULL DEFAULT '',
    ADD COLUMN change_target bigint NOT NULL DEFAULT 0,
    ADD COLUMN change_emoji  text NOT NULL DEFAULT '',
    ADD COLUMN edited_at     timestamptz,
    ADD COLUMN deleted_at    timestamptz;

-- The edits of one message, which its delete empties.
CREATE INDEX messages_edits ON messages (chat_id, change_target) WHERE change_kind = 'edit';

-- Who reacts to which message with what; a history page reads its rows by
-- the primary key, in emoji then user order (byte order, "C").
CREATE TABLE message_reactions (
    chat_id text COLLATE "C" NOT NULL,
    seq     bigint NOT NULL,
    emoji   text COLLATE "C" NOT NULL,
    user_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (chat_id, seq, emoji, user_id),
    FOREIGN KEY (chat_id, seq) REFERENCES messages ON DELETE CASCADE
);
