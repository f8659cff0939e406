-- Account lifecycle: an operator may disable an account, and a deleted
-- account stays as a tombstone (no password hash, deleted_at set) so its id
-- keeps answering "deleted" in history and its username stays reserved.
ALTER TABLE users
    ADD COLUMN disabled   boolean NOT NULL DEFAULT false,
    ADD COLUMN deleted_at timestamptz;
