-- A user's block list, in blocked id order. Blocking needs no account on
-- either side to exist (an answer that depended on it would tell a prober
-- who exists), so there are no foreign keys.
CREATE TABLE blocks (
    user_id    text COLLATE "C" NOT NULL,
    blocked_id text COLLATE "C" NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, blocked_id)
);

-- A user's privacy settings; no row = the defaults.
CREATE TABLE privacy (
    user_id      text COLLATE "C" PRIMARY KEY,
    presence     text NOT NULL CHECK (presence IN ('contacts', 'nobody')),
    request_push boolean NOT NULL DEFAULT false,
    updated_at   timestamptz NOT NULL
);

-- Pending message requests: 1:1 chats opened with user_id by someone who
-- shared no chat with them, until user_id accepts or replies.
CREATE TABLE direct_requests (
    user_id    text COLLATE "C" NOT NULL,
    chat_id    text COLLATE "C" NOT NULL,
    from_id    text COLLATE "C" NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, chat_id)
);

-- Pending group invitations, until user_id accepts or declines.
CREATE TABLE group_invites (
    user_id    text COLLATE "C" NOT NULL,
    group_id   text COLLATE "C" NOT NULL,
    from_id    text COLLATE "C" NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, group_id)
);
