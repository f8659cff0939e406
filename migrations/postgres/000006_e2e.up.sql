-- End-to-end encryption: the public keys devices publish (opaque bytes to
-- the server) and store-and-forward mailboxes between devices. Like the
-- consent tables there are no foreign keys to users: an account deletion
-- removes these rows itself.

-- One device's identity key and signed prekey with its signature.
CREATE TABLE device_keys (
    user_id           text COLLATE "C" NOT NULL,
    device_id         text COLLATE "C" NOT NULL,
    identity_key      bytea NOT NULL,
    signed_prekey_id  bigint NOT NULL,
    signed_prekey     bytea NOT NULL,
    signed_prekey_sig bytea NOT NULL,
    updated_at        timestamptz NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- One-time prekeys, each handed out once (the claim deletes it), lowest id
-- first; they go with their device's keys.
CREATE TABLE one_time_prekeys (
    user_id   text COLLATE "C" NOT NULL,
    device_id text COLLATE "C" NOT NULL,
    prekey_id bigint NOT NULL,
    key       bytea NOT NULL,
    PRIMARY KEY (user_id, device_id, prekey_id),
    FOREIGN KEY (user_id, device_id) REFERENCES device_keys ON DELETE CASCADE
);

-- A device's mailbox: the last seq given out, kept when every message is
-- acknowledged so seqs never repeat. Its row lock serialises the sends to
-- one device.
CREATE TABLE device_mailboxes (
    user_id   text COLLATE "C" NOT NULL,
    device_id text COLLATE "C" NOT NULL,
    last_seq  bigint NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- Messages waiting for a device until it acknowledges them.
CREATE TABLE device_messages (
    user_id     text COLLATE "C" NOT NULL,
    device_id   text COLLATE "C" NOT NULL,
    seq         bigint NOT NULL,
    sender      text COLLATE "C" NOT NULL,
    from_device text NOT NULL,
    cmid        bytea NOT NULL,
    body        bytea NOT NULL,
    sent_at     timestamptz NOT NULL,
    PRIMARY KEY (user_id, device_id, seq)
);

-- What makes device-message sends idempotent: (sender, cmid) -> the message
-- it first produced, within the dedupe window (swept like dedupe).
CREATE TABLE device_message_dedupe (
    sender      text COLLATE "C" NOT NULL,
    cmid        bytea NOT NULL,
    user_id     text NOT NULL,
    device_id   text NOT NULL,
    seq         bigint NOT NULL,
    from_device text NOT NULL,
    sent_at     timestamptz NOT NULL,
    PRIMARY KEY (sender, cmid)
);
CREATE INDEX device_message_dedupe_by_sent_at ON device_message_dedupe (sent_at);
