-- One row per user who saved a profile; a user without one has the default
-- (empty fields, discoverable). Deleting a user deletes its profile.
CREATE TABLE profiles (
    user_id      text COLLATE "C" PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    display_name text NOT NULL,
    about        text NOT NULL,
    avatar       text NOT NULL,
    discoverable boolean NOT NULL,
    updated_at   timestamptz NOT NULL
);
