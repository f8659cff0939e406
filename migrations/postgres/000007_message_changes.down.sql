DROP TABLE message_reactions;
DROP INDEX messages_edits;
ALTER TABLE messages
    DROP COLUMN change_kind,
    DROP COLUMN change_target,
    DROP COLUMN change_emoji,
    DROP COLUMN edited_at,
    DROP COLUMN deleted_at;
