-- One row per login: the family of refresh tokens descending from it. Only
-- refresh_id may still be exchanged; a revoked session is a deleted row.
CREATE TABLE sessions (
    id           text COLLATE "C" PRIMARY KEY,
    user_id      text COLLATE "C" NOT NULL,
    label        text NOT NULL,
    refresh_id   text COLLATE "C" NOT NULL,
    created_at   timestamptz NOT NULL,
    last_used_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);
-- "Every session of this user": lists, logout everywhere.
CREATE INDEX sessions_by_user ON sessions (user_id, id);
